"""Writing goldens: the one path from generated goldens into the store, for the command and the plugin.

``write_goldens`` is what ``regenerate-goldens`` and the plugin's ``--golden-update`` both call:
where it replaces goldens it measures the numeric change versus the old ones first and keeps
the old bytes of every data file whose content did not change (so a diff shows only real
changes), then hands the files to the store, which writes them atomically under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.making.generate import Generated, generation_info
from harness.goldens.layout import HarnessLayout as Names
from harness.goldens.layout import case_dir, is_sidecar
from harness.goldens.manifest import Manifest
from harness.notices import quiet
from harness.notices import one_line
from harness.goldens.safeload import load_weights
from harness.verdicts import Verdict


@dataclass
class Written:
    """What a write did."""

    directory: Path  # the version directory written
    manifest: Manifest
    files: int  # files written for the cases given
    changes: str = ""  # the numeric changes versus the goldens replaced; "" when none was
    kept: int = 0  # data files that kept their old bytes (same content)


def write_goldens(store, version: str, generated: list[Generated], command: str, *,
                  overwrite: bool = False, owner: str | None = None,
                  say: Callable[[str], None] | None = None) -> Written:
    """Write ``generated`` into ``store``'s set for torch ``version``, recording ``command``.

    Without ``overwrite`` an existing golden is never replaced (harness.goldens.store.GoldenExists);
    ``owner`` is the pytest node id that owns the goldens (the plugin's); ``say`` hears the
    numeric changes before anything is written. Raises GoldenError or OSError when the store
    cannot take them.
    """
    for g in generated:
        if owner is not None:
            g.entry.owner = owner
    replaced = _replaced(store, version, generated) if overwrite else []
    changes, kept = "", 0
    if replaced:
        old = store.open(version, unsealed_ok=True)
        carried = carry_other_backends(old, replaced)
        changes = changes_report(old, replaced)
        kept = keep_unchanged(old, replaced)
        if len(replaced) == len(generated) and all(_unchanged(old, g) for g in generated):
            # nothing to write: the header (when, by what command) would be the only change
            if say is not None:
                say(changes + "\nnothing changed: every file and manifest entry is as it was; nothing written")
            return Written(store.root / version, old.manifest, 0, changes, kept)
        if say is not None:
            say(changes + (f"\n{kept} data files have the same content as before; their old bytes are kept"
                           if kept else "")
                + (f"\nkept the goldens of backends this run did not make: {', '.join(carried)}" if carried else ""))
    manifest = store.write(version, {g.case.id: g.entry for g in generated},
                           {name: data for g in generated for name, data in g.files.items()},
                           generation_info(command), overwrite=overwrite)
    return Written(store.root / version, manifest, sum(len(g.files) for g in generated), changes, kept)


def _unchanged(old, g: Generated) -> bool:
    """Whether a regenerated case is, file for file and in its manifest entry, what the set holds."""
    from harness.goldens.layout import case_of
    from harness.goldens.manifest import file_entry

    entry = old.cases.get(g.case.id)
    if entry is None or entry.malformed:
        return False
    from harness.goldens.store import GoldenError

    held = {n for n in old.files if case_of(n) == g.case.id}
    if held != set(g.files) or any(old.files.get(n) != file_entry(d) for n, d in g.files.items()):
        return False
    try:  # on disk too: a file deleted by hand is rewritten
        if any(old.read(n, kind="text") != d for n, d in g.files.items()):
            return False
    except GoldenError:
        return False
    return entry.to_json() == g.entry.to_json()


def _replaced(store, version: str, generated: list[Generated]) -> list[Generated]:
    """The generated cases that already have goldens of ``version``."""
    directory = store.root / version
    if not directory.is_dir():
        return []
    old = store.open(version, unsealed_ok=True)
    return [g for g in generated if g.case.id in old.cases or (directory / case_dir(g.case.id)).exists()]


def carry_other_backends(old, generated: list[Generated]) -> list[str]:
    """Keep, in each regenerated case, the backends this run did not make (a run restricted to
    some backends): their status, warnings and expected output stay as they were, so an update
    never deletes goldens it was not asked to rewrite. Returns ``case/backend`` for each kept."""
    from harness.goldens.store import GoldenError

    carried = []
    for g in generated:
        previous = old.cases.get(g.case.id)
        if previous is None or previous.malformed:
            continue
        for backend, status in previous.backends.items():
            if backend in g.entry.backends:
                continue
            if status == "ok":
                name = Names.expected_file(g.case, backend)
                try:
                    g.files[name] = old.read(name)
                except GoldenError:
                    continue  # unusable already: not carried, and the change report says REMOVED
                if backend in previous.warnings:
                    g.entry.warnings[backend] = previous.warnings[backend]
            g.entry.backends[backend] = status
            carried.append(f"{g.case.id}/{backend}")
    return carried


def keep_unchanged(old, generated: list[Generated]) -> int:
    """Reuse the old bytes of data files whose content did not change. Returns how many.

    torch.save's legacy format (PyTorch's suite writes state_dicts in it) keys storages by
    memory address, so identical state serializes to different bytes on every run. A
    regeneration then keeps the old file, and its diff shows only real changes. Files
    that carry code are compared as bytes only: their content is not safe to load here.
    """
    from harness.making.artifacts import CODE_CARRYING
    from harness.compare import compare
    from harness.goldens.store import GoldenError

    kept = 0
    for g in generated:
        for name, data in g.files.items():
            if Names.kind_of(name) in CODE_CARRYING or is_sidecar(name):
                continue
            try:
                before = old.read(name)
            except GoldenError:
                continue
            if before == data:
                continue
            try:
                with quiet():
                    same = compare(load_weights(before), load_weights(data)).ok
            except Exception:
                same = False
            if same:
                g.files[name] = before
                kept += 1
    return kept


def changes_report(old, generated: list[Generated]) -> str:
    """What regeneration changes numerically, per case and backend, versus the old goldens."""
    from tabulate import tabulate

    rows = [row for g in generated for row in _change_rows(old, g)]
    changed = sum(1 for r in rows if r[2] not in ("identical", "same values", "still not made"))
    head = f"numeric changes versus the old goldens: {changed} of {len(rows)} (case, backend) pairs"
    return head + "\n" + tabulate(rows, headers=["case", "backend", "change", "detail"])


def _change_rows(old, g: Generated) -> list[list[str]]:
    """One case's rows of the change report: per backend, how its expected output changed."""
    from harness.goldens.store import GoldenError

    previous = old.cases.get(g.case.id)
    old_status = previous.backends if previous is not None else {}
    new_status = g.entry.backends
    rows = []
    for backend in sorted({*new_status, *old_status}):
        new = g.files.get(Names.expected_file(g.case, backend))
        was_made = old_status.get(backend) == "ok"
        if not was_made:
            rows.append([g.case.id, backend, "still not made" if new is None else "new",
                         new_status.get(backend, "") if new is None else "this backend had no golden before"])
        elif new is None:
            rows.append([g.case.id, backend, "REMOVED", new_status.get(backend, "")])
        else:
            try:
                rows.append([g.case.id, backend, *_changed(old.read(Names.expected_file(g.case, backend)), new, g)])
            except GoldenError as exc:
                rows.append([g.case.id, backend, "old golden unusable", str(exc)])
            except Exception as exc:  # vouched for, yet it does not load: it is replaced all the same
                rows.append([g.case.id, backend, "old golden unusable", one_line(exc)])
    return rows


def _changed(before: bytes, new: bytes, g: Generated) -> list[str]:
    """(change, detail) between an old and a new expected output."""
    from harness.compare import compare

    if before == new:
        return ["identical", ""]
    with quiet():
        diff = compare(load_weights(before), load_weights(new), g.case.tolerance)
    if diff.ok:
        return ["same values", "bytes differ, outputs equal"]
    # the detail is the comparison's own message, so its element counts are the ones a failure shows
    if diff.verdict == Verdict.ROUNDING:
        return [f"ROUNDING {diff.max_ulp_diff:.3g} ulps", diff.message]
    if diff.max_step_diff is not None:  # a quantized output: its change in quantization steps
        return [f"CHANGED {diff.max_step_diff:g} steps", diff.message]
    if diff.max_abs_diff is not None:  # a float output has no steps: its largest change in value
        return [f"CHANGED |Δ| {diff.max_abs_diff:.3g}", diff.message]
    return ["CHANGED", diff.message]  # a shape, dtype or structure change
