"""The measured compatibility window of a stack library's files: the goldens each release of the
library made, replayed on every release of its runtime from that one to the newest, per backend
and artifact kind, next to the window the library promises (a stack's optional ``promised``).

Each runtime release replays in the environment a bisection would use (harness.reporting.bisect's
Replays: the running interpreter for the installed release, a cached environment beside the torch
it pairs with for any other). No torch is imported here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from harness.reporting.bisect import Replays
from harness.verdicts import Verdict


@dataclass
class Cell:
    """The results of one (made with, replayed on, backend, artifact kind)."""

    made_with: str
    runtime: str
    backend: str
    artifact: str
    verdicts: Counter = field(default_factory=Counter)
    steps: float | None = None  # the largest distance to the golden, in its quantization steps
    abs_diff: float | None = None  # the same in value, where outputs are float
    promised: bool | None = None

    def add(self, record: dict) -> None:
        self.verdicts[record["verdict"]] += 1
        for name, value in (("steps", record.get("max_step_diff")), ("abs_diff", record.get("max_abs_diff"))):
            if isinstance(value, (int, float)):
                setattr(self, name, max(value, getattr(self, name) or 0.0))

    def results(self) -> str:
        return ", ".join(f"{n} {v}" for v, n in sorted(self.verdicts.items(), key=lambda x: str(x[0])))

    def distance(self) -> str:
        if self.steps is not None:
            return f"{self.steps:.3g} steps"
        return f"{self.abs_diff:.3g}" if self.abs_diff is not None else "-"

    def holds(self) -> bool:
        judged = [v for v in self.verdicts if v != Verdict.SKIP]
        return bool(judged) and all(v in (Verdict.PASS, Verdict.ROUNDING) for v in judged)


def programs(store, makers: dict[tuple[str, str], str], kind: str) -> dict[str, str]:
    """Per made-with release, what its goldens of ``kind`` declare of themselves (the program's
    schema version, its delegates' versions), read from the first such golden, vetted."""
    from harness.goldens.layout import case_dir, file_name
    from harness.goldens.pte_file import summarize
    from harness.goldens.store import GoldenError, GoldenStore

    golden, out = GoldenStore(store), {}
    for (version, case_id), release in sorted(makers.items()):
        if release in out:
            continue
        opened = golden.open(version, unsealed_ok=True)
        name = f"{case_dir(case_id)}/{file_name(kind)}"
        if not opened.exists(name):
            continue
        try:
            summary = summarize(opened.read(name, kind=kind), name, frozenset(), trusted=True)
        except GoldenError:
            continue
        # the versions a program declares: its schema's, each delegate's header and graph identifier
        out[release] = f"schema {summary.version}" + "".join(
            f", {d} {', '.join(v.split(', ')[:2])}" for d, v in dict(summary.delegates).items())
    return out


def made_with(store, library: str, case_ids: set[str]) -> dict[tuple[str, str], str]:
    """(golden set, case) -> the release of ``library`` that made it, as each entry records it."""
    from harness.goldens.store import GoldenStore

    found: dict[tuple[str, str], str] = {}
    golden = GoldenStore(store)
    for version in golden.versions()[0]:
        opened = golden.open(version, unsealed_ok=True)
        if opened.manifest is None:
            continue
        for case_id, entry in opened.cases.items():
            release = (getattr(entry, "made_with", None) or {}).get(library) if case_id in case_ids else None
            try:
                if isinstance(release, str) and len(release) < 40:
                    found[(version, case_id)] = str(Version(release).public)
            except InvalidVersion:
                continue
    return found


def measure(replays: Replays, library: str, case_ids: list[str], runtimes: list[str],
            promised=None) -> tuple[list[Cell], dict[str, str]]:
    """The cells of every runtime release in ``runtimes`` replaying the goldens that releases up to
    it made, and a note per runtime the harness could not replay on."""
    makers = made_with(replays.store, library, set(case_ids))
    cells: dict[tuple, Cell] = {}
    notes: dict[str, str] = {}
    for runtime in sorted(runtimes, key=Version):
        replays.say(f"replaying the goldens of {len(case_ids)} cases on {replays.name(runtime)}")
        records, note = replays.replayed(runtime, case_ids)
        if note:
            notes[runtime] = note
        for record in records:
            maker = makers.get((record["golden_version"], record["case"]))
            if maker is None or Version(maker) > Version(runtime):
                continue
            key = (maker, runtime, record["backend"], record["artifact"])
            if key not in cells:
                cells[key] = Cell(*key, promised=promised(maker, runtime) if promised else None)
            cells[key].add(record)
    return sorted(cells.values(), key=_order), notes


def _order(cell: Cell):
    return Version(cell.made_with), Version(cell.runtime), cell.artifact, cell.backend


def table(cells: list[Cell], declared: dict[str, str] | None = None) -> list[str]:
    """The cells as a Markdown table, and a line per made-with release: the window it measured
    (and what its programs declare of themselves, where ``declared`` says)."""
    lines = ["| made with | replayed on | backend | artifact | results | largest distance | promised |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        promise = "-" if c.promised is None else ("yes" if c.promised else "no")
        lines.append(f"| {c.made_with} | {c.runtime} | {c.backend} | {c.artifact} | {c.results()} | "
                     f"{c.distance()} | {promise} |")
    by_maker: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        by_maker[c.made_with].append(c)
    lines.append("")
    for maker, own in by_maker.items():
        held = sorted({c.runtime for c in own if all(o.holds() for o in own if o.runtime == c.runtime)}, key=Version)
        broke = sorted({c.runtime for c in own} - set(held), key=Version)
        lines.append(f"- made with {maker}: holds on {', '.join(held) or 'none'}"
                     + (f"; changes on {', '.join(broke)}" if broke else "")
                     + (f" (its programs: {declared[maker]})" if declared and maker in declared else ""))
    return lines
