"""First bad release: one case's golden replayed on the torch releases between one where it
still holds and one where it changed, each in its cached environment (harness.making.isolated),
halving the range each time. No torch is imported here: every replay is a subprocess.

A release's outcome is "same" (every judged result passes, or differs by float rounding only),
"changed" (a drift, a load error, a corrupt or missing result: what the golden says no longer
holds) or "unjudged" (every result skipped, or the harness could not run there); an unjudged
release is stepped over, as ``git bisect skip`` does, and named in the answer.
"""

from __future__ import annotations

import json
import tempfile

from harness.verdicts import Verdict
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.version import Version

#: a crash is a change like any other: the release where loading or running the golden kills the process
CHANGED = (Verdict.DRIFT, Verdict.LOAD_ERROR, Verdict.CRASH, Verdict.CORRUPT, Verdict.MISSING)
SAME = (Verdict.PASS, Verdict.ROUNDING)


@dataclass
class Probe:
    """What replaying the golden on one release gave."""

    release: str
    records: list = field(default_factory=list)  # the replay's JSON records of this case and golden
    note: str = ""  # why there are no records (the harness failed there), or that it was assumed

    @property
    def state(self) -> str:
        judged = [r for r in self.records if r["verdict"] != Verdict.SKIP]
        if not judged:
            return "same" if self.note.startswith("assumed") else "unjudged"
        return "changed" if any(r["verdict"] in CHANGED for r in judged) else "same"

    def figures(self) -> list[str]:
        """One line per distinct outcome, its (artifact, backend) pairs folded together."""
        if not self.records:
            return [self.note]
        groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for r in self.records:
            groups[_outcome(r)][r["artifact"]].append(r["backend"])
        return ["; ".join(f"{kind} on {'/'.join(where)}" for kind, where in kinds.items()) + f": {what}"
                for what, kinds in groups.items()]


def _outcome(r: dict) -> str:
    parts = [r["verdict"]]
    if r.get("max_step_diff"):
        parts.append(f"{r['max_step_diff']:.3g} steps")
    if r.get("max_abs_diff"):
        parts.append(f"max |Δ| {r['max_abs_diff']:.3g}")
    if r.get("mismatched") is not None and r.get("total") and r["verdict"] != Verdict.PASS:
        parts.append(f"{r['mismatched']} of {r['total']} elements")
    unmeasured = r["verdict"] == Verdict.DRIFT and not r.get("max_abs_diff")  # e.g. another shape
    if (unmeasured or r["verdict"] in (Verdict.LOAD_ERROR, Verdict.CRASH, Verdict.CORRUPT, Verdict.MISSING, Verdict.SKIP)) and r.get("message"):
        parts.append(f"({r['message'][:120]})")
    return " ".join(parts)


@dataclass
class Answer:
    last_good: Probe
    first_bad: Probe
    unjudged: list[str]  # releases between the two that could not be judged
    probes: list[Probe]  # in the order they ran

    def lines(self) -> list[str]:
        between = (f"; {', '.join(self.unjudged)} between them could not be judged, so the change is in one of "
                   f"{', '.join([*self.unjudged, self.first_bad.release])}" if self.unjudged else "")
        out = [f"first bad release: {self.first_bad.release} (last good: {self.last_good.release}){between}"]
        for side, probe in (("last good", self.last_good), ("first bad", self.first_bad)):
            out.append(f"  {side} {probe.release}:")
            out += [f"    {line}" for line in probe.figures()]
        return out


def _pick(inner: list[int], releases: list[str], cached: Callable[[str], bool]) -> int:
    """The middle of ``inner``; or, when a release in its central half has an environment
    already, the one of those nearest the middle: a few more replays cost less than an install."""
    mid = len(inner) // 2
    central = inner[len(inner) // 4: len(inner) - len(inner) // 4]
    ready = [i for i in central if cached(releases[i])]
    return min(ready, key=lambda i: abs(i - inner[mid])) if ready else inner[mid]


def search(releases: list[str], probe: Callable[[str], Probe], good: Probe, bad: Probe,
           say: Callable[[str], None] = print, cached: Callable[[str], bool] = lambda release: False,
           what: str = "torch") -> Answer:
    """The first release after ``good`` whose outcome is "changed", by halving ``releases``
    (sorted; the first is ``good``'s, the last ``bad``'s); unjudged releases are stepped over.
    ``cached`` says which releases have an environment already (preferred near the middle)."""
    lo, hi = 0, len(releases) - 1
    probes = {releases[lo]: good, releases[hi]: bad}
    order, unjudged = [], set()
    while True:
        inner = [i for i in range(lo + 1, hi) if releases[i] not in unjudged]
        if not inner:
            break
        mid = _pick(inner, releases, cached)
        say(f"replaying on {what} {releases[mid]} ({len(inner)} releases left between "
            f"{releases[lo]} and {releases[hi]})")
        found = probe(releases[mid])
        probes[releases[mid]] = found
        order.append(found)
        say(f"  {what} {releases[mid]}: {found.state}: {'; '.join(found.figures())}")
        if found.state == "changed":
            hi = mid
        elif found.state == "same":
            lo = mid
        else:
            unjudged.add(releases[mid])
    skipped = [releases[i] for i in range(lo + 1, hi) if releases[i] in unjudged]
    return Answer(probes[releases[lo]], probes[releases[hi]], skipped, order)


def between(releases: list[str], good: str, bad: str) -> list[str]:
    """The registry's releases from ``good`` to ``bad``, both included, oldest first."""
    lo, hi = Version(good), Version(bad)
    inside = sorted({Version(v) for v in releases if lo <= Version(v) <= hi} | {lo, hi})
    return [str(v) for v in inside]


class Replays:
    """Replays of one case on a release: the running interpreter for its own torch, a cached
    environment (made on first use, its progress shown) for any other."""

    def __init__(self, case: str, store: Path, fixtures: Path, running: str, backends=(), artifacts=(),
                 say: Callable[[str], None] = print, command: str = "bc-harness bisect",
                 library: tuple[str, str] | None = None, torch_for: Callable[[str, str], str | None] | None = None):
        """``library`` (package, installed release): the releases are that stack library's, each
        installed beside the torch ``torch_for(release, running)`` names, not torch's."""
        self.case, self.store, self.fixtures, self.running = case, store, fixtures, running
        self.backends, self.artifacts, self.say, self.command = list(backends), set(artifacts), say, command
        self.library, self.torch_for = library, torch_for

    def torch_of(self, release: str) -> str | None:
        """The torch a library release is replayed beside (None: none known; the running torch for
        a bisection over torch itself)."""
        return self.torch_for(release, self.running) if self.library else release

    def _here(self, release: str) -> bool:
        if self.library:
            return release == self.library[1] and self.torch_of(release) in (None, self.running)
        return release == self.running

    def _env(self, release: str):
        from harness.making.isolated import ensure_env, env_dir

        if self.library:
            pin, torch = (self.library[0], release), self.torch_of(release) or self.running
            return env_dir(torch, pin), lambda say: ensure_env(torch, say, pin=pin)
        return env_dir(release), lambda say: ensure_env(release, say)

    def cached(self, release: str) -> bool:
        from harness.making.isolated import READY

        return self._here(release) or (self._env(release)[0] / READY).is_file()

    def records(self, release: str, golden: str | None) -> tuple[list[dict], str]:
        """The JSON records of this case (on ``golden`` alone, or every set), and a note when none."""
        found, note = self.replayed(release, [self.case], golden)
        found = [r for r in found if r["case"] == self.case and (not self.artifacts or r["artifact"] in self.artifacts)]
        return found, note or ("" if found else f"{self.name(release)} gave no result for {self.case}")

    def name(self, release: str) -> str:
        return (f"{self.library[0]} {release} (torch {self.torch_of(release) or self.running})" if self.library
                else f"torch {release}")

    def replayed(self, release: str, cases: list[str], golden: str | None = None) -> tuple[list[dict], str]:
        """The JSON records of a replay of ``cases`` on ``release`` (on ``golden`` alone, or every
        set), and a note where the harness could not replay there."""
        from harness.making.isolated import run_harness

        name = self.name(release)
        try:
            python = Path(sys.executable) if self._here(release) else self._env(release)[1](
                lambda line: self.say(f"  [{name}] {line}"))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            return [], f"no environment for {name}: {exc}"
        with tempfile.TemporaryDirectory(prefix="bc-bisect-") as tmp:
            out = Path(tmp) / "results.json"
            args = ["replay", "--goldens", str(self.store), "--fixtures", str(self.fixtures), "--json", str(out),
                    "-q", "-j", "1", *[a for c in cases for a in ("-k", c)]]
            args += ["--golden", golden] if golden else []
            args += [a for b in self.backends for a in ("--backend", b)]
            done = run_harness(python, "main", args, self.command, capture=True)
            if not out.is_file():
                tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
                return [], f"the harness did not replay on {name} (exit {done.returncode}): {tail[0]}"
            return json.loads(out.read_text(encoding="utf-8")), ""

    def probe(self, release: str, golden: str) -> Probe:
        records, note = self.records(release, golden)
        return Probe(release, [r for r in records if r["golden_version"] == golden], note)
