"""Known drifts: drifts a person has examined, bounded by figures and explained, that do not fail a run.

They live in ``<golden dir>/known-drifts.toml``::

    [[drift]]
    golden = "2.4.1"            # golden version (glob)
    case = "lstm"               # case id (glob)
    backend = "onednn"          # glob, or a list of globs; default "*"
    artifacts = ["*"]           # globs, default every kind
    max_abs_diff = 1e-7         # the drift stays known only within these bounds
    max_step_diff = 0
    # incomparable = true     # instead of bounds: a shape or type change, examined
    reason = "why, and where it was looked into"

A covered result keeps its ``drift`` verdict and its figures and carries the reason in
``known``; a drift beyond the bounds, or anywhere else, still fails. ``[[load-error]]``
entries do the same for an examined failure to load, matched by a ``message`` substring.
``[[crash]]`` entries cover a replay that kills its process, matched by ``message`` too (the
signal, e.g. ``"SIGSEGV"``); they name the CPUs the crash was seen on (``seen_on``, required)
and may limit themselves to machines with some CPU flags (``isa = ["avx512f"]``): the same
crash on another kind of CPU is a new finding and fails.
"""

from __future__ import annotations

import fnmatch
import tomllib

from harness.verdicts import Verdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

FILE = "known-drifts.toml"


class KnownDriftError(Exception):
    """The known-drifts file cannot be read; a usage error."""


@dataclass(frozen=True)
class KnownDrift:
    golden: str
    case: str
    reason: str
    backend: str | tuple[str, ...] = "*"
    artifacts: tuple[str, ...] = ("*",)
    max_abs_diff: float | None = None
    max_step_diff: float | None = None
    #: covers drifts without figures (a shape or type change), which no bound can describe
    incomparable: bool = False
    #: "drift"; "load-error" for an examined failure to load, or "crash" for a replay that
    #: kills its process, both matched by ``message``
    verdict: str = Verdict.DRIFT
    message: str | None = None
    #: crash entries: the CPUs it was seen on, and the CPU flags a machine needs for the entry to cover it
    seen_on: tuple[str, ...] = ()
    isa: tuple[str, ...] = ()

    def covers(self, result) -> bool:
        if result.verdict != self.verdict:
            return False
        if self.verdict in (Verdict.LOAD_ERROR, Verdict.CRASH):
            return (self.message or "\0") in result.message and self._matches(result) and self._on_this_cpu()
        return self._matches(result) and self._within_bounds(result)

    def _on_this_cpu(self) -> bool:
        if not self.isa:
            return True
        from harness.machine import current

        return set(self.isa) <= set(current()["isa"])

    def _matches(self, result) -> bool:
        return (fnmatch.fnmatchcase(result.golden_version, self.golden)
                and fnmatch.fnmatchcase(result.case, self.case)
                and any(fnmatch.fnmatchcase(result.backend, b) for b in _globs(self.backend))
                and any(fnmatch.fnmatchcase(result.artifact, a) for a in self.artifacts))

    def _within_bounds(self, result) -> bool:
        if result.max_abs_diff is None and result.max_step_diff is None:
            return self.incomparable
        if self.max_abs_diff is None and self.max_step_diff is None:
            return False
        return _within(result.max_abs_diff, self.max_abs_diff) and _within(result.max_step_diff, self.max_step_diff)


def _within(value, bound) -> bool:
    if bound is None:
        return True
    return value is not None and value <= bound


#: the largest known-drifts file that is read
MAX_BYTES = 1 << 20


def load(root: Path) -> list[KnownDrift]:
    from harness.goldens.files import Unreadable, read_inside

    path = Path(root) / FILE
    try:
        text = read_inside(Path(root), FILE, MAX_BYTES).decode("utf-8")
    except Unreadable as exc:
        if exc.missing:
            return []
        raise KnownDriftError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise KnownDriftError(f"{path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
        entries = [_entry(verdict, e) for verdict in (Verdict.DRIFT, Verdict.LOAD_ERROR, Verdict.CRASH) for e in data.get(verdict, [])]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise KnownDriftError(f"{path}: {type(exc).__name__}: {exc}"[:300]) from exc
    if any(e.verdict == Verdict.DRIFT and e.max_abs_diff is None and e.max_step_diff is None and not e.incomparable
           for e in entries):
        raise KnownDriftError(f"{path}: every known drift needs max_abs_diff, max_step_diff or incomparable = true")
    if any(e.verdict in (Verdict.LOAD_ERROR, Verdict.CRASH) and not e.message for e in entries):
        raise KnownDriftError(f"{path}: every known load-error and crash needs the message it matches")
    if any(e.verdict == Verdict.CRASH and not e.seen_on for e in entries):
        raise KnownDriftError(f"{path}: every known crash needs seen_on, the CPUs it was seen on")
    broad = [e for e in entries if not e.case.strip("*?[]") or len(e.message or "xxxxxx") < 6]
    if broad:  # an entry that excuses everything excuses nothing: it names a case and what it matches
        raise KnownDriftError(f"{path}: an entry for case {broad[0].case!r} is too broad: name a case (a glob "
                              "with something of its id) and, for a load-error or crash, at least 6 characters "
                              "of the message it matches")
    return entries


def _entry(verdict: str, e: dict) -> KnownDrift:
    seen_on = tuple(str(s) for s in e.get("seen_on", ()))
    reason = str(e["reason"])
    if seen_on:
        reason += f" Seen on: {'; '.join(seen_on)}."
    return KnownDrift(golden=str(e["golden"]), case=str(e["case"]), reason=reason,
                      backend=_globs(e.get("backend", "*")), artifacts=tuple(e.get("artifacts", ["*"])),
                      max_abs_diff=e.get("max_abs_diff"), max_step_diff=e.get("max_step_diff"),
                      incomparable=bool(e.get("incomparable", False)), verdict=verdict,
                      message=e.get("message"), seen_on=seen_on, isa=tuple(str(f) for f in e.get("isa", ())))


def expected_crash(known: list[KnownDrift], golden: str, case: str, artifact: str, backend: str) -> KnownDrift | None:
    """The [[crash]] entry that says (golden, case, artifact, backend) crashes on this CPU, if any:
    what a loop that runs artifacts in its own process (a benchmark's) must leave out."""
    where = SimpleNamespace(golden_version=golden, case=case, artifact=artifact, backend=backend)
    return next((e for e in known if e.verdict == Verdict.CRASH and e._matches(where) and e._on_this_cpu()), None)


def _globs(value) -> tuple[str, ...]:
    """A glob or a list of them, as a tuple of strings."""
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else (str(value),)


def mark(result, known: list[KnownDrift]):
    """Set ``result.known`` to the reason of the first entry that covers it."""
    for entry in known:
        if entry.covers(result):
            result.known = entry.reason
            break
    return result
