"""Known drifts: drifts a person has examined, bounded by figures and explained, that do not fail a run.

They live in ``<golden dir>/known-drifts.toml``::

    [[drift]]
    golden = "2.4.1"            # golden version (glob)
    case = "lstm"               # case id (glob)
    backend = "onednn"          # glob, default "*"
    artifacts = ["*"]           # globs, default every kind
    max_abs_diff = 1e-7         # the drift stays known only within these bounds
    max_step_diff = 0
    # incomparable = true     # instead of bounds: a shape or type change, examined
    reason = "why, and where it was looked into"

A covered result keeps its ``drift`` verdict and its figures and carries the reason in
``known``; a drift beyond the bounds, or anywhere else, still fails. ``[[load-error]]``
entries do the same for an examined failure to load, matched by a ``message`` substring.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

FILE = "known-drifts.toml"


class KnownDriftError(Exception):
    """The known-drifts file cannot be read; a usage error."""


@dataclass(frozen=True)
class KnownDrift:
    golden: str
    case: str
    reason: str
    backend: str = "*"
    artifacts: tuple[str, ...] = ("*",)
    max_abs_diff: float | None = None
    max_step_diff: float | None = None
    #: covers drifts without figures (a shape or type change), which no bound can describe
    incomparable: bool = False
    #: "drift", or "load-error" for an examined failure to load, matched by ``message``
    verdict: str = "drift"
    message: str | None = None

    def covers(self, result) -> bool:
        if result.verdict != self.verdict:
            return False
        if self.verdict == "load-error":
            return (self.message or "\0") in result.message and self._matches(result)
        return self._matches(result) and self._within_bounds(result)

    def _matches(self, result) -> bool:
        return (fnmatch.fnmatchcase(result.golden_version, self.golden)
                and fnmatch.fnmatchcase(result.case, self.case)
                and fnmatch.fnmatchcase(result.backend, self.backend)
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


def load(root: Path) -> list[KnownDrift]:
    path = Path(root) / FILE
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        entries = [
            KnownDrift(golden=str(e["golden"]), case=str(e["case"]), reason=str(e["reason"]),
                       backend=str(e.get("backend", "*")), artifacts=tuple(e.get("artifacts", ["*"])),
                       max_abs_diff=e.get("max_abs_diff"), max_step_diff=e.get("max_step_diff"),
                       incomparable=bool(e.get("incomparable", False)), verdict=verdict,
                       message=e.get("message"))
            for verdict in ("drift", "load-error") for e in data.get(verdict, [])
        ]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise KnownDriftError(f"{path}: {exc}") from exc
    if any(e.verdict == "drift" and e.max_abs_diff is None and e.max_step_diff is None and not e.incomparable
           for e in entries):
        raise KnownDriftError(f"{path}: every known drift needs max_abs_diff, max_step_diff or incomparable = true")
    if any(e.verdict == "load-error" and not e.message for e in entries):
        raise KnownDriftError(f"{path}: every known load-error needs the message it matches")
    return entries


def mark(result, known: list[KnownDrift]):
    """Set ``result.known`` to the reason of the first entry that covers it."""
    for entry in known:
        if entry.covers(result):
            result.known = entry.reason
            break
    return result
