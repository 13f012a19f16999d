"""Verdicts: what a replayed result is found to be, each with its meaning, here and nowhere else.

A ``Verdict`` is a ``str`` (``Verdict.DRIFT == "drift"``), so JSON records, known-drifts.toml
sections and older reports read and compare as plain text. Imports nothing of the harness: every
stage (compare, the golden store, replaying, reporting, the doors) names verdicts through it.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    ROUNDING = "rounding"
    DRIFT = "drift"
    LOAD_ERROR = "load-error"
    CRASH = "crash"
    MISSING = "missing"
    CORRUPT = "corrupt"
    SKIP = "skip"

    @property
    def meaning(self) -> str:
        """What the verdict says of a result, as the docs' table shows it."""
        return _MEANINGS[self]

    @property
    def failing(self) -> bool:
        """Whether the verdict fails a run (unless the result is forward or a known entry covers it)."""
        return self in FAILING


_MEANINGS = {
    Verdict.PASS: "loaded, ran, and matches the golden within the case's tolerance (default: exact)",
    Verdict.ROUNDING: "a float output differs by float rounding only, within the rounding bound (in ulps of its "
                      "largest magnitude): shown with its ulps, not failing; --exact makes it a drift",
    Verdict.DRIFT: "loaded and ran, but the output differs: the message gives elements, steps and values",
    Verdict.LOAD_ERROR: "the artifact (or its forward) fails with this torch",
    Verdict.CRASH: "loading or running it killed the process replaying it (a signal), or it gave no answer in "
                   "time; the run goes on",
    Verdict.MISSING: "a golden file is absent, this torch's golden set lacks the case, or a manifest promises a "
                     "result nothing produces",
    Verdict.CORRUPT: "a file does not match its manifest entry, has none, or the manifest is unusable",
    Verdict.SKIP: "cannot be judged here, with the reason",
}

#: the verdicts that fail a run
FAILING = frozenset({Verdict.DRIFT, Verdict.LOAD_ERROR, Verdict.CRASH, Verdict.MISSING, Verdict.CORRUPT})
#: verdicts an entry of known-drifts.toml can cover (harness.goldens.known)
KNOWABLE = (Verdict.DRIFT, Verdict.LOAD_ERROR, Verdict.CRASH)
#: verdicts of an output that was obtained and compared
COMPARED = (Verdict.PASS, Verdict.ROUNDING, Verdict.DRIFT)
