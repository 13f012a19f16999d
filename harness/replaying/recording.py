"""Recording: every Result of a replay is made here, with what the layout and the run add to it
(a machine-dependent skip, the machines behind a compared output, a known-drift entry)."""

from __future__ import annotations

from harness import machine
from harness.catalog import Case
from harness.compat import torch_release
from harness.goldens.known import mark
from harness.replaying.results import COMPARED, KNOWABLE, Result


class Recorder:
    """Makes the Results of one golden set read through ``layout`` under a run's ``known`` drifts."""

    def __init__(self, layout, known: list):
        self.layout, self.known = layout, known
        self.runtime = torch_release()
        self._machines: dict[str, tuple | None] = {}  # case id -> (golden machine, this machine) where they differ

    def __call__(self, case: Case, artifact: str, backend: str, verdict: str, message: str = "", **figures) -> Result:
        skip = self.layout.machine_skip(case)
        if skip and verdict in (*COMPARED, "load-error"):
            # the replay's own finding stays in the message, as information
            verdict, message = "skip", f"{skip}; replayed anyway: {verdict}{': ' + message if message else ''}"
        if verdict in COMPARED and self._machine_pair(case):
            figures["golden_machine"], figures["runtime_machine"] = self._machine_pair(case)
        if verdict == "crash":  # which CPU crashed is half the finding
            figures.setdefault("runtime_machine", machine.describe(machine.current()))
        result = Result(case.id, artifact, backend, self.layout.golden.version, self.runtime, verdict, message,
                        layout=self.layout.name, pytorch_test=self.layout.pytorch_test(case), **figures)
        if self.known and verdict in KNOWABLE:
            mark(result, self.known)
        return result

    def crash(self, case: Case, kind: str, backend: str, cause: str) -> Result:
        """The verdict of a result whose loading and running killed the process replaying it."""
        return self(case, kind, backend, "crash", f"the process replaying it died: {cause}; it crashes loading or "
                                                  f"running the {kind} artifact under {backend}")

    def _machine_pair(self, case: Case) -> tuple | None:
        if case.id not in self._machines:
            golden = self.layout.golden
            self._machines[case.id] = machine.pair(machine.of_case(golden.manifest, golden.cases.get(case.id)),
                                                   machine.current())
        return self._machines[case.id]
