"""Recording: every Result of a replay is made here, with what the layout and the run add to it
(a machine-dependent skip, the machines behind a compared output, a known-drift entry), and the
results a golden set promises that nothing produced (both doors call ``unkept_promises``)."""

from __future__ import annotations

from harness import machine, stacks
from harness.catalog import Case
from typing import Iterator

from harness.compat import torch_release
from harness.goldens.known import mark
from harness.replaying.results import Result, whole
from harness.verdicts import COMPARED, KNOWABLE, Verdict
from harness.versions import full_version


class Recorder:
    """Makes the Results of one golden set read through ``layout`` under a run's ``known`` drifts."""

    def __init__(self, layout, known: list):
        self.layout, self.known = layout, known
        self.runtime = torch_release()
        self._machines: dict[str, tuple | None] = {}  # case id -> (golden machine, this machine) where they differ
        self._notes: dict[str, str | None] = {}  # flow -> what a replay of its cases says of this install

    def __call__(self, case: Case, artifact: str, backend: str, verdict: str, message: str = "", **figures) -> Result:
        skip = self.layout.machine_skip(case)
        if skip and verdict in (*COMPARED, Verdict.LOAD_ERROR):
            # the replay's own finding stays in the message, as information
            verdict, message = Verdict.SKIP, f"{skip}; replayed anyway: {verdict}{': ' + message if message else ''}"
        if verdict in COMPARED and self._machine_pair(case):
            figures["golden_machine"], figures["runtime_machine"] = self._machine_pair(case)
        note = self._note(case)
        if note and verdict in (*COMPARED, Verdict.LOAD_ERROR):  # next to the verdict: it may be why it moved
            message = f"{message} ({note})" if message else note
        if verdict == Verdict.CRASH:  # which CPU crashed is half the finding
            figures.setdefault("runtime_machine", machine.describe(machine.current()))
        result = Result(case.id, artifact, backend, self.layout.golden.version, self.runtime, verdict, message,
                        layout=self.layout.name, pytorch_test=self.layout.pytorch_test(case), flow=case.flow,
                        **figures)
        if self.known and verdict in KNOWABLE:
            mark(result, self.known)
        return result

    def crash(self, case: Case, kind: str, backend: str, cause: str) -> Result:
        """The verdict of a result whose loading and running killed the process replaying it."""
        return self(case, kind, backend, Verdict.CRASH, f"the process replaying it died: {cause}; it crashes loading or "
                                                  f"running the {kind} artifact under {backend}")

    def _note(self, case: Case) -> str | None:
        if case.flow not in self._notes:
            self._notes[case.flow] = stacks.flow(case.flow).replay_note(case)
        return self._notes[case.flow]

    def _machine_pair(self, case: Case) -> tuple | None:
        if case.id not in self._machines:
            golden = self.layout.golden
            self._machines[case.id] = machine.pair(machine.of_case(golden.manifest, golden.cases.get(case.id)),
                                                   machine.current())
        return self._machines[case.id]


def absent(golden, case_id: str) -> bool:
    """Whether ``case_id`` is absent from ``golden`` (a harness.goldens.store.GoldenSet): its
    manifest, readable, names no such case, and the set is not the one this process makes (where
    it is missing). Absent is no result: a set that predates a case, or was made for some cases
    (one library release's, say), is not a skip of every case it never held. Both doors ask it."""
    return (golden is not None and not golden.manifest_error and golden.manifest is not None
            and case_id not in golden.cases and full_version(golden.version) != full_version(stacks.own_set()))


def unkept_promises(golden, case_id: str, catalog: set[str], backends: list[str] | None,
                    produced: set) -> Iterator[Result]:
    """The golden count guard: every result a manifest promises must be there.

    A golden set that quietly shrinks (a case dropped from the catalog, an artifact kind or a
    backend dropped from a case) is how a BC suite stops testing anything; each promised
    (case, artifact, backend) of ``golden`` (a harness.goldens.store.GoldenSet) that is not in
    ``produced`` becomes a ``missing`` result. ``catalog``: the catalog's case ids; ``backends``:
    the run's (None: every one).
    """
    entry = golden.cases.get(case_id)
    if entry is not None and entry.malformed and case_id not in catalog:  # a catalog case says so itself
        yield whole(golden.version, torch_release(), f"the manifest's entry for {case_id} is malformed: {entry.malformed}",
                    case=case_id)
    if entry is None or entry.malformed or entry.skipped:
        return
    for kind in entry.artifacts:
        for backend, status in entry.backends.items():
            if status != "ok" or (backends and backend != "any" and backend not in backends):
                continue
            if (case_id, kind, backend) in produced:
                continue
            why = (f"the catalog no longer has case {case_id!r}" if case_id not in catalog
                   else f"case {case_id!r} no longer has the {kind} artifact")
            yield Result(case_id, kind, backend, golden.version, torch_release(), Verdict.MISSING,
                         f"torch {golden.version}'s manifest promises this result, but {why}; "
                         "a golden set must not shrink quietly")
