"""Replaying one golden set: each (case, artifact kind, backend) loaded, run, judged and recorded.

A Replayer reads a golden set through its layout (harness.goldens.layout), so the same code replays
our store and PyTorch's flat directory; ``open_replayer`` is the one way to make one, for the CLI
and the plugin alike. Its four jobs are a module each: loading (reading and vetting the files, an
artifact loaded under a backend), running (under a backend, and the reference kernels), judging
(verdict and figures) and recording (the Result). Scheduling many sets over processes and shards
is harness.replaying.schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from harness import stacks
from harness.catalog import Case, GivenInput, load_catalog
from harness.compare import Diff, compare, compare_sets
from harness.compat import torch_release
from harness.backends import supported_backends
from harness.goldens.layout import LAYOUTS
from harness.goldens.store import GoldenError, GoldenSet
from harness.making import flows
from harness.replaying.judging import judge, state_diff, tolerance
from harness.replaying.loading import Reader, runtime_problem
from harness.replaying.recording import Recorder
from harness.replaying.request import Options
from harness.replaying.results import Result
from harness.replaying.running import Failed, reference_output, run_artifact, run_today
from harness.verdicts import Verdict


def owned_cases(golden: GoldenSet, known: set[str]) -> list[Case]:
    """The cases of a set's goldens that tests of the pytest plugin own (``owner`` in their entry)
    and that no catalog declares: replayable without their tests where the file carries its model
    (scripted, traced, lite, export); the kinds that need the test's model say so."""
    out = []
    for case_id, entry in golden.cases.items():
        if entry.malformed or not entry.owner or case_id in known or not entry.artifacts:
            continue
        try:
            out.append(Case(case_id, build=None, input=GivenInput(None), artifacts=tuple(entry.artifacts),
                            flow=entry.flow or None, source=entry.owner, state_dict_zipfile=True,
                            backend_agnostic=set(entry.backends) == {"any"}))
        except ValueError as exc:  # a flow no stack has (an edited manifest): that entry is corrupt, not the run
            entry.malformed = str(exc)
    return out


@dataclass
class Evaluation:
    """One result, with the golden and obtained outputs behind it (None where not reached)."""

    result: Result
    golden: object = None
    obtained: object = None
    targets: tuple | None = None  # (golden, obtained) get_attr targets, for the package kind


class Replayer:
    def __init__(self, layout, cases: list[Case], options: Options):
        self.layout = layout
        self.cases = cases
        self.options = options
        self.runtime = torch_release()
        self.have = supported_backends()
        self.reader = Reader(layout, options.verbose)
        self.record = Recorder(layout, options.known)

    def backends_for(self, case: Case) -> list[str]:
        if case.backend_agnostic:
            return ["any"]
        return stacks.case_backends(case, self.options.backends, self.have)

    def run(self) -> Iterator[Result]:
        for case in self.cases:
            yield from self.replay_case(case)

    def replay_case(self, case: Case, skip=frozenset(), crashed=None, at=None) -> Iterator[Result]:
        """Every result of ``case`` in report order. In a crash-safe replay (harness.sandbox),
        ``at`` is told each result's key before it is judged, the keys in ``skip`` were judged
        by an earlier process, and those in ``crashed`` (key -> cause) killed one."""
        version = self.layout.golden.version
        for kind, _ in self.layout.artifacts(case):
            for backend in self.backends_for(case):
                key = (version, case.id, kind, backend)
                if key in skip:
                    continue
                if crashed and key in crashed:
                    yield self.crash(case, kind, backend, crashed[key])
                    continue
                if at is not None:
                    at(key)
                yield self.evaluate(case, kind, backend).result

    def crash(self, case: Case, kind: str, backend: str, cause: str) -> Result:
        """The verdict of a result whose loading and running killed the process replaying it."""
        return self.record.crash(case, kind, backend, cause)

    def _unrunnable(self, case: Case, backend: str, kind: str | None = None) -> str | None:
        """Why ``backend`` cannot run this golden of the case here, or None."""
        if backend != "any" and backend not in self.have and backend not in stacks.of_case(case).backends:
            return f"torch {self.runtime} has no {backend} backend"
        return self.layout.backend_problem(case, backend, kind) if kind else self.layout.backend_problem(case, backend)

    def evaluate(self, case: Case, kind: str, backend: str) -> Evaluation:
        """Judge one (case, artifact kind, backend) of this golden set."""
        def result(verdict, message="", **figures):
            return Evaluation(self.record(case, kind, backend, verdict, message, **figures))

        files = self.reader.files(case)
        if files.problem is not None:
            return result(*files.problem)
        unable = runtime_problem(case, kind)
        if unable:
            return result(Verdict.SKIP, f"torch {self.runtime} cannot replay it: {unable}")
        data = self.reader.artifact(case, kind, files)
        if isinstance(data, tuple):
            return result(*data)
        problem = self._unrunnable(case, backend, kind)
        if problem:
            return result(Verdict.SKIP, problem)
        golden = None
        try:
            if case.check_numerics:
                golden = self.reader.expected(case, backend, files)
            model, obtained, noted = run_artifact(self.layout, case, kind, data, backend, files, self.options)
            if obtained is None:
                return result(Verdict.PASS, "loaded; the case checks loading only")
            diff = compare(golden, obtained, tolerance(case, self.options.rounding_ulps))
            targets = None
            if kind == "package":  # PyTorch's package test compares the graph's get_attr targets too
                targets = (self.reader.get_attr_targets(case), flows.get_attr_targets(model))
                diff = compare_sets(*targets).merge(diff)
        except GoldenError as exc:
            return result(exc.verdict, str(exc))
        except Failed as exc:
            return result(exc.verdict, str(exc), warnings=exc.warnings)
        return self._judged(case, kind, backend, golden, obtained, diff, files, noted, targets, (kind, backend, model))

    def _judged(self, case, kind, backend, golden, obtained, diff: Diff, files, noted, targets=None,
                loaded=None) -> Evaluation:
        """The Evaluation of an output that was obtained: verdict, figures, distance to fbgemm."""
        reference = reference_output(self.layout, self.reader, case, files, self.have, loaded)
        verdict, message, figures = judge(self.layout, self.reader, case, backend, golden, obtained, diff, files,
                                          reference)
        return Evaluation(self.record(case, kind, backend, verdict, message, warnings=noted, **figures),
                          golden, obtained, targets)

    def evaluate_model(self, case: Case, backend: str, example) -> Evaluation:
        """Judge the model as ``case.build`` makes it today against this set's golden output.

        This is the snapshot question next to the artifacts' backward-compatibility one:
        does today's code, on today's torch, still give the golden output? ``example`` is
        the input the caller would use now; a golden made from another input is stale.
        """
        def result(verdict, message="", **figures):
            return Evaluation(self.record(case, "model", backend, verdict, message, **figures))

        files = self.reader.files(case)
        if files.problem is not None:
            return result(*files.problem)
        unable = stacks.build_problem(case)
        if unable:
            return result(Verdict.SKIP, f"torch {self.runtime} cannot build it: {unable}")
        problem = self._unrunnable(case, backend)
        if problem:
            return result(Verdict.SKIP, problem)
        stale = compare(files.example, example, where="input")
        if not stale.ok:
            return result(Verdict.DRIFT, f"the example input is not the one the golden was made with ({stale.message}): "
                                   "make it the same on every run (torch.manual_seed before drawing it, or fixed "
                                   "values); the stored artifacts were replayed on the golden's own input")
        try:
            golden = self.reader.expected(case, backend, files)
            obtained, noted = run_today(case, backend, files.example, self.options)
        except GoldenError as exc:
            return result(exc.verdict, str(exc))
        except Failed as exc:
            return result(exc.verdict, str(exc))
        bound = tolerance(case, self.options.rounding_ulps)
        diff = compare(golden, obtained, bound)
        if "state" not in files.decoded:  # once per case, under the backend the golden state_dict was made with
            files.decoded["state"] = state_diff(self.reader, case, files.example, self.have[0] if self.have else None,
                                                bound)
        state = files.decoded["state"]
        if isinstance(state, GoldenError):
            return result(state.verdict, str(state))
        if state is not None:
            diff = Diff().merge(diff).merge(state)
        return self._judged(case, "model", backend, golden, obtained, diff, files, noted)


def open_golden(layout, root: Path, version: str, options: Options) -> GoldenSet:
    """The golden set ``version`` under ``root`` as ``layout`` (a class of harness.goldens.layout) finds it."""
    return GoldenSet.open(layout.set_dir(root, version), version, required=layout.manifest_required,
                          trust_unverified=options.trust_unverified, trust_code=options.trust_goldens,
                          operators=frozenset(options.operators))


def open_replayer(layout, root: Path, version: str, cases: list[Case], options: Options,
                  golden: GoldenSet | None = None) -> Replayer:
    """The one way to make a Replayer: the golden set ``version`` under ``root`` (``golden``, where
    the caller has opened it already), read through ``layout``, for the cases that layout covers."""
    golden = golden if golden is not None else open_golden(layout, root, version, options)
    return Replayer(layout(golden), [c for c in cases if layout.covers(c)], options)


# --- one result in a crash-safe child (harness.sandbox): the pytest plugin's catalog items ---------

_OPEN: dict[tuple, Replayer] = {}
_THREADS: list[int] = []  # the child's own torch thread count, read once


def evaluate_in_child(request: dict, at) -> Iterator[Evaluation]:
    """In a harness.sandbox child: the Evaluation of one (golden version, case, kind, backend).

    ``request`` names the store (``root``, ``layout``, ``fixtures``), the Options, the result and
    ``context`` (replayers are kept while it stays the same); ``share``: torch threads for this
    check (an xdist worker's share of the cores; onednn keeps the child's own count, as a serial
    run would); ``crashed``: a cause where this result killed an earlier child."""
    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
    options = request["options"]
    if request.get("share"):
        options.onednn_threads = _THREADS[0]
    torch.set_num_threads(request.get("share") or _THREADS[0])
    slot = (request["context"], request["version"])
    replayer = _OPEN.get(slot)
    if replayer is None:
        if not any(key[0] == request["context"] for key in _OPEN):
            _OPEN.clear()  # another session, or goldens rewritten: nothing earlier is kept
        cases = load_catalog(Path(request["fixtures"]))
        replayer = _OPEN[slot] = open_replayer(LAYOUTS[request["layout"]], Path(request["root"]), request["version"],
                                               cases, options)
    case = next(c for c in replayer.cases if c.id == request["case"])
    key = (request["version"], case.id, request["kind"], request["backend"])
    if key in request["crashed"]:
        yield Evaluation(replayer.crash(case, request["kind"], request["backend"], request["crashed"][key]))
        return
    at(key)
    yield replayer.evaluate(case, request["kind"], request["backend"])
