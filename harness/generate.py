"""Generating goldens: every artifact of a case, and its expected output under each backend."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import dataclass, field

from . import __version__, flows
from .artifacts import KINDS, file_name
from .catalog import Case
from .compat import cpu_capability, flow_problem, has_avx512_vnni, kind_problem, torch_release
from .engines import engine, supported_engines
from .notices import quiet, runtime_warnings
from .safeload import load_weights, save_bytes
from .store import parse_version


from .results import one_line


@dataclass
class Generated:
    """One case's golden files (name relative to the version directory -> bytes) and manifest entry."""

    case: Case
    files: dict[str, bytes] = field(default_factory=dict)
    entry: dict = field(default_factory=dict)


#: extra calls of each backend's model at generation, to refuse a non-reproducible golden
REPEATS = 4


def expected_name(case_id: str, backend: str) -> str:
    return f"{case_id}/expected.{backend}.pt"


def generation_info(command: str) -> dict:
    """The manifest's description of the machine and torch that made a golden set."""
    import torch

    from . import machine

    return {
        "torch": torch_release(),
        "torch_full_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_capability": cpu_capability(),
        "avx512_vnni": has_avx512_vnni(),
        "fingerprint": machine.current(),
        "harness": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }



def generate_case(case: Case, engines: list[str] | None = None) -> Generated:
    """Make every golden file of ``case`` with the installed torch.

    Artifacts are made once under fbgemm (or the first engine this build has), as PyTorch's
    suite does; the expected output is made under each engine from a fresh build with the
    same seed, so each backend has its own golden. What cannot be made is recorded with
    the reason instead of failing the whole run.
    """
    engines = engines if engines is not None else supported_engines()
    out = Generated(case)
    entry = out.entry
    entry.update(description=case.description, flow=case.flow, source=case.source,
                 artifacts=[], skipped_artifacts={}, backends={}, warnings={})
    if case.pytorch:
        entry["pytorch_test"] = case.pytorch.stem
    if parse_version(torch_release()) < parse_version(case.min_torch):
        entry["skipped"] = f"needs torch >= {case.min_torch}"
        return out
    if flow_problem(case.flow):
        entry["skipped"] = flow_problem(case.flow)
        return out

    primary = engines[0] if engines else None
    with quiet(), engine(primary):
        example = flows.make_input(case)
        out.files[f"{case.id}/input.pt"] = save_bytes(example)
        try:
            reference = case.forward(flows.runnable(case, flows.build(case), example), example)
        except Exception as exc:  # recorded, replayed as skip; the other cases go on
            out.files.clear()
            entry["skipped"] = f"torch {torch_release()} cannot build and run it: {one_line(exc)}"
            return out
        for kind in case.artifacts:
            if kind_problem(kind):
                entry["skipped_artifacts"][kind] = f"torch {torch_release()}: {kind_problem(kind)}"
                continue
            try:
                data = KINDS[kind].save(case, flows.build(case), example)
            except Exception as exc:  # recorded, replayed as skip
                entry["skipped_artifacts"][kind] = f"torch {torch_release()} cannot make it: {one_line(exc)}"
                continue
            problem = _round_trip_problem(case, kind, data, example, reference)
            if problem:
                entry["skipped_artifacts"][kind] = f"torch {torch_release()} {problem}"
                continue
            out.files[f"{case.id}/{file_name(kind)}"] = data
            entry["artifacts"].append(kind)
        if case.flow == "fx":
            model = flows.runnable(case, flows.build(case), example)
            # sorted: a pickled set follows the process's string-hash order, and the bytes would
            # change on every run; replay compares it as a set either way
            out.files[f"{case.id}/get_attr_targets.pt"] = save_bytes(sorted(flows.get_attr_targets(model)))

    from .compare import compare

    for backend in ["any"] if case.engine_agnostic else engines:
        with quiet() as caught, engine(backend):
            try:
                model = flows.runnable(case, flows.build(case), example)
                result = case.forward(model, example)
                # A golden needs a reproducible output: more calls of the model, and a model
                # built afresh, must all agree (qnnpack's ConvTranspose3d, for one, does not).
                repeats = [case.forward(model, example) for _ in range(REPEATS - 1)]
                repeats.append(case.forward(flows.runnable(case, flows.build(case), example), example))
            except Exception as exc:
                entry["backends"][backend] = f"{backend} cannot run it: {one_line(exc)}"
                continue
        unstable = next((d for d in (compare(result, r) for r in repeats) if not d.ok), None) \
            if case.check_numerics else None
        if unstable is not None:
            entry["backends"][backend] = (f"{backend} is not reproducible: {REPEATS + 1} runs of the same "
                                          f"model disagree ({unstable.message})")
            continue
        out.files[expected_name(case.id, backend)] = save_bytes(result)
        entry["backends"][backend] = "ok"
        noted = runtime_warnings(caught)
        if noted:
            entry["warnings"][backend] = noted
    return out


def _round_trip_problem(case: Case, kind: str, data: bytes, example, reference) -> str | None:
    """Load a just-made artifact, run it, and compare with the model it was made from.

    A golden that disagrees with its own model the moment it is made can never pass; it
    is recorded as skipped with the reason instead (a legacy-format state_dict of a
    dynamic LSTM, for one, reloads with wrong weights).
    """
    from .compare import compare

    try:
        # our own bytes, made a moment ago: loaded without the weights_only restrictions, which
        # older torch versions cannot lift for packed parameters
        obtained = case.forward(KINDS[kind].load(case, data, example, trusted=True), example)
    except Exception as exc:
        return f"saves it but cannot run it after loading: {one_line(exc)}"
    if case.check_numerics:
        diff = compare(reference, obtained, case.tolerance)
        if not diff.ok:
            return f"saves it but the reloaded {kind} disagrees with the model: {diff.message}"
    return None


def command_line() -> str:
    """The command as the user typed it (an isolated environment's run is handed it)."""
    import os
    import shlex

    if os.environ.get("BC_HARNESS_COMMAND"):
        return os.environ["BC_HARNESS_COMMAND"]
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])


def keep_unchanged(old, generated: list[Generated]) -> int:
    """Reuse the old bytes of data files whose content did not change. Returns how many.

    torch.save's legacy format (PyTorch's suite writes state_dicts in it) keys storages by
    memory address, so identical state serializes to different bytes on every run. A
    regeneration then keeps the old file, and its diff shows only real changes. Files
    that carry code are compared as bytes only: their content is not safe to load here.
    """
    from .artifacts import CODE_CARRYING
    from .compare import compare
    from .store import GoldenError

    kept = 0
    for g in generated:
        for name, data in g.files.items():
            if name.rsplit("/", 1)[-1].split(".")[0] in CODE_CARRYING:
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

    from .compare import compare
    from .store import GoldenError

    rows = []
    for g in generated:
        if g.case.id not in old.cases and not (old.root / g.case.id).exists():
            continue
        old_status = old.cases.get(g.case.id, {}).get("backends", {})
        new_status = g.entry.get("backends", {})
        for backend in sorted({*new_status, *old_status}):
            name = expected_name(g.case.id, backend)
            new = g.files.get(name)
            was_made = old_status.get(backend) == "ok"
            if not was_made and new is None:
                rows.append([g.case.id, backend, "still not made", new_status.get(backend, "")])
                continue
            if not was_made:
                rows.append([g.case.id, backend, "new", "this backend had no golden before"])
                continue
            if new is None:
                rows.append([g.case.id, backend, "REMOVED", new_status.get(backend, "")])
                continue
            try:
                before = old.read(name)
            except GoldenError as exc:
                rows.append([g.case.id, backend, "old golden unusable", str(exc)])
                continue
            if before == new:
                rows.append([g.case.id, backend, "identical", ""])
                continue
            with quiet():
                diff = compare(load_weights(before), load_weights(new), g.case.tolerance)
            if diff.ok:
                rows.append([g.case.id, backend, "same values", "bytes differ, outputs equal"])
            elif diff.verdict == "rounding":
                rows.append([g.case.id, backend, f"ROUNDING {diff.max_ulp_diff:.3g} ulps",
                             f"{diff.mismatched} of {diff.total} elements; {diff.message}"])
            else:
                steps = "?" if diff.max_step_diff is None else f"{diff.max_step_diff:g}"
                rows.append([g.case.id, backend, f"CHANGED {steps} steps",
                             f"{diff.mismatched} of {diff.total} elements; {diff.message}"])
    changed = sum(1 for r in rows if r[2] not in ("identical", "same values", "still not made"))
    head = f"numeric changes versus the old goldens: {changed} of {len(rows)} (case, backend) pairs"
    return head + "\n" + tabulate(rows, headers=["case", "backend", "change", "detail"])
