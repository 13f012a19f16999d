"""Replaying one golden set: load each artifact, run it under a backend, and judge it into a Result.

A Replayer reads a golden set through its layout (harness.goldens.layout), so the same code replays our
store and PyTorch's flat directory; ``open_replayer`` is the one way to make one, for the CLI
and the plugin alike. Scheduling many sets over processes and shards is harness.replaying.schedule.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from harness import machine, stacks
from harness.making import flows
from harness.making.artifacts import KINDS
from harness.catalog import Case
from harness.compare import Diff, compare, compare_sets, compare_state
from harness.compat import kind_problem, torch_release
from harness.engines import engine, supported_engines
from harness.notices import quiet, runtime_warnings
from harness.replaying.results import COMPARED, KNOWABLE, Result
from harness.notices import one_line
from harness.goldens.safeload import CannotLoadSafely, load_weights
from harness.goldens.store import GoldenError, GoldenSet


@dataclass
class Options:
    backends: list[str] | None = None  # None: every engine this torch supports
    verbose: bool = False
    trust_unverified: bool = False
    #: --trust-goldens: vetting's allowlists waived (harness.goldens.vetting), for goldens the user trusts
    trust_goldens: bool = False
    known: list = field(default_factory=list)  # harness.goldens.known.KnownDrift entries
    forward: bool = True  # also replay goldens of newer torch versions, as information
    patterns: list | None = None  # the -k selection, to tell a deselected golden from a lost one
    #: intra-op threads while replaying on onednn (None: leave torch's). A parallel worker runs
    #: torch single-threaded but sets this to the serial run's count: onednn's dynamic linear
    #: rounds float32 differently with another count (ondevice-conv_linear: 250 of 250
    #: elements by up to 1.2e-07).
    onednn_threads: int | None = None
    #: the float rounding bound of every case, in ulps (harness.compare); None: each case's own.
    #: 0 is --exact: any float difference is a drift
    rounding_ulps: int | None = None
    #: --golden: only these golden versions (None: every one in the store)
    versions: list | None = None
    #: the project's own additions to the operator allowlist ([tool.bc-harness] operators)
    operators: tuple = ()
    #: seconds a worker may spend on one result before it counts as hung and is stopped (a
    #: ``crash``); None: no limit (harness.sandbox)
    result_timeout: float | None = 600.0


#: where the reference's model comes from, in order of preference: the kinds whose model is a
#: module tree or a graph the reference rewrites, then the TorchScript kinds it runs as they are
REFERENCE_SOURCES = ("state_dict", "package", "export", "scripted", "traced", "lite")

#: kinds whose replay re-runs the case's flow on today's torch (a state_dict loads into today's
#: conversion of an FX model; a package re-runs prepare_fx/convert_fx)
_REBUILDS = frozenset({"state_dict", "package"})


def runtime_problem(case: Case, kind: str) -> str | None:
    """Why this torch cannot replay ``kind`` of ``case`` at all, or None."""
    # a flow whose every file holds its library's own tensors or ops reads none of them without it
    rebuilt = kind in _REBUILDS or stacks.of_case(case).library_files
    if rebuilt and case.build is None:  # a golden of a test's own model, replayed without its test
        return f"its model is built by its test ({case.source}): pytest replays it"
    return kind_problem(kind) or (stacks.build_problem(case) if rebuilt else None)


def owned_cases(golden: GoldenSet, known: set[str]) -> list[Case]:
    """The cases of a set's goldens that tests of the pytest plugin own (``owner`` in their entry)
    and that no catalog declares: replayable without their tests where the file carries its model
    (scripted, traced, lite, export); the kinds that need the test's model say so."""
    from harness.catalog import GivenInput

    out = []
    for case_id, entry in golden.cases.items():
        if entry.malformed or not entry.owner or case_id in known or not entry.artifacts:
            continue
        out.append(Case(case_id, build=None, input=GivenInput(None), artifacts=tuple(entry.artifacts),
                        flow=entry.flow or None, source=entry.owner, state_dict_zipfile=True,
                        engine_agnostic=set(entry.backends) == {"any"}))
    return out


@dataclass
class _CaseFiles:
    """What a case's replay reads once and shares across artifacts and backends."""

    problem: tuple[str, str] | None = None  # (verdict, reason) for every result of the case
    example: object = None
    artifacts: dict = field(default_factory=dict)  # kind -> bytes, or (verdict, reason)
    #: kind -> notices.Remembered of the engine-free part of loading it (the kinds that have one)
    decoded: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    reference: object = None  # the reference kernels' output, or the reason there is none (str)


@dataclass
class Evaluation:
    """One result, with the golden and obtained outputs behind it (None where not reached)."""

    result: Result
    golden: object = None
    obtained: object = None
    targets: tuple | None = None  # (golden, obtained) get_attr targets, for the package kind


@contextmanager
def _threads_for(backend: str, onednn_threads: int | None):
    """Options.onednn_threads in force while replaying on ``backend``."""
    if onednn_threads is None or backend != "onednn":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(onednn_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Replayer:
    #: how many cases' files are held at once (items of a case usually run together)
    CACHE = 4

    def __init__(self, layout, cases: list[Case], options: Options):
        self.layout = layout
        self.cases = cases
        self.options = options
        self.runtime = torch_release()
        self.have = supported_engines()
        self._files: dict[str, _CaseFiles] = {}
        self._machines: dict[str, tuple | None] = {}  # case id -> (golden machine, this machine) where they differ

    def _result(self, case: Case, artifact: str, backend: str, verdict: str, message: str = "", **figures):
        """Every result of a replay is made here: machine-dependent skips, machines, known drifts."""
        pytorch_test = self.layout.pytorch_test(case)
        skip = self.layout.machine_skip(case)
        if skip and verdict in (*COMPARED, "load-error"):
            # the replay's own finding stays in the message, as information
            verdict, message = "skip", f"{skip}; replayed anyway: {verdict}{': ' + message if message else ''}"
        if verdict in COMPARED and self._machine_pair(case):
            figures["golden_machine"], figures["runtime_machine"] = self._machine_pair(case)
        if verdict == "crash":  # which CPU crashed is half the finding
            figures.setdefault("runtime_machine", machine.describe(machine.current()))
        result = Result(case.id, artifact, backend, self.layout.golden.version, self.runtime, verdict,
                        message, layout=self.layout.name, pytorch_test=pytorch_test, **figures)
        if self.options.known and verdict in KNOWABLE:
            from harness.goldens.known import mark

            mark(result, self.options.known)
        return result

    def _machine_pair(self, case: Case) -> tuple | None:
        if case.id not in self._machines:
            golden = self.layout.golden
            self._machines[case.id] = machine.pair(machine.of_case(golden.manifest, golden.cases.get(case.id)),
                                                   machine.current())
        return self._machines[case.id]

    def _tolerance(self, case: Case):
        """The case's tolerance, with the run's rounding bound where one was given (--exact: 0)."""
        if self.options.rounding_ulps is None:
            return case.tolerance
        from dataclasses import replace

        return replace(case.tolerance, rounding_ulps=self.options.rounding_ulps)

    def _error(self, exc: BaseException, prefix: str = "") -> str:
        if self.options.verbose:
            traceback.print_exception(exc)
        return prefix + one_line(exc)

    def backends_for(self, case: Case) -> list[str]:
        if case.engine_agnostic:
            return ["any"]
        wanted = self.options.backends or self.have
        return list(wanted)

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
        return self._result(case, kind, backend, "crash",
                            f"the process replaying it died: {cause}; it crashes loading or running the {kind} "
                            f"artifact under {backend}")

    def _case_files(self, case: Case) -> _CaseFiles:
        """Read (once) what every result of a case needs: its standing and its input."""
        files = self._files.get(case.id)
        if files is not None:
            return files
        if len(self._files) >= self.CACHE:
            self._files.pop(next(iter(self._files)))
        files = self._files[case.id] = _CaseFiles()
        if self.layout.golden.manifest_error:  # nothing in a set its manifest cannot vouch for is read
            files.problem = ("corrupt", self.layout.golden.manifest_error)
            return files
        files.problem = self.layout.case_problem(case)
        if files.problem is None:
            try:
                with quiet():
                    files.example = load_weights(self.layout.golden.read(self.layout.input_file(case)))
            except GoldenError as exc:
                files.problem = (exc.verdict, f"input: {exc}")
            except Exception as exc:
                files.problem = ("load-error", self._error(exc, "input: "))
        return files

    def _artifact(self, case: Case, kind: str, files: _CaseFiles):
        """The artifact's verified bytes, or (verdict, reason)."""
        if kind not in files.artifacts:
            skipped = dict(self.layout.artifacts(case)).get(kind)
            if skipped:
                files.artifacts[kind] = ("skip", skipped)
            else:
                try:
                    files.artifacts[kind] = self.layout.golden.read(self.layout.artifact_file(case, kind),
                                                                    kind=kind)
                except GoldenError as exc:
                    files.artifacts[kind] = (exc.verdict, str(exc))
        return files.artifacts[kind]

    def evaluate(self, case: Case, kind: str, backend: str) -> Evaluation:
        """Judge one (case, artifact kind, backend) of this golden set."""
        files = self._case_files(case)
        if files.problem is not None:
            return Evaluation(self._result(case, kind, backend, *files.problem))
        unable = runtime_problem(case, kind)
        if unable:
            return Evaluation(self._result(case, kind, backend, "skip", f"torch {self.runtime} cannot replay it: {unable}"))
        data = self._artifact(case, kind, files)
        if isinstance(data, tuple):
            return Evaluation(self._result(case, kind, backend, *data))
        return self._replay_one(case, kind, data, backend, files)

    @staticmethod
    def _load(case: Case, kind: str, data: bytes, shared: _CaseFiles):
        """The artifact loaded under the current engine. A kind whose loading has an engine-free
        part (``decode``: reading a .pt2 archive) does that part once per golden, for every
        backend; its warnings and errors come with each (notices.Remembered)."""
        loader = KINDS[kind]
        if not hasattr(loader, "decode"):
            return loader.load(case, data, shared.example)
        from harness.notices import Remembered

        if kind not in shared.decoded:
            shared.decoded[kind] = Remembered(lambda: loader.decode(case, data))
        return loader.from_decoded(case, shared.decoded[kind].get())

    def _expected(self, case: Case, backend: str, shared: _CaseFiles):
        """The golden output for a backend, read once per case; raises GoldenError."""
        if backend not in shared.expected:
            try:
                with quiet():
                    shared.expected[backend] = load_weights(
                        self.layout.golden.read(self.layout.expected_file(case, backend)))
            except GoldenError as exc:
                shared.expected[backend] = exc
            except Exception as exc:
                shared.expected[backend] = GoldenError(f"expected output unreadable: {one_line(exc)}")
        value = shared.expected[backend]
        if isinstance(value, GoldenError):
            raise value
        return value

    def _replay_one(self, case: Case, kind: str, data: bytes, backend: str, shared: _CaseFiles) -> Evaluation:
        layout = self.layout

        def result(verdict, message="", **figures):
            return Evaluation(self._result(case, kind, backend, verdict, message, **figures))

        if backend != "any" and backend not in self.have:
            return result("skip", f"torch {self.runtime} has no {backend} engine")
        problem = layout.backend_problem(case, backend, kind)
        if problem:
            return result("skip", problem)
        golden = None
        if case.check_numerics:
            try:
                golden = self._expected(case, backend, shared)
            except GoldenError as exc:
                return result(exc.verdict, str(exc))
        example = shared.example
        with quiet() as caught, engine(backend), _threads_for(backend, self.options.onednn_threads):
            try:
                model = self._load(case, kind, data, shared)
            except CannotLoadSafely as exc:
                return result("skip", str(exc))
            except Exception as exc:
                return result("load-error", self._error(exc))
            if not case.check_numerics:
                return result("pass", "loaded; the case checks loading only")
            try:
                obtained = layout.run(case, model, example)
            except Exception as exc:
                return result("load-error", self._error(exc, "forward failed: "))
        noted = runtime_warnings(caught)
        diff = compare(golden, obtained, self._tolerance(case))
        targets = None
        if kind == "package":
            try:
                with quiet():
                    golden_targets = load_weights(layout.golden.read(layout.get_attr_file(case)))
            except GoldenError as exc:
                return result(exc.verdict, str(exc))
            except Exception as exc:  # vouched for and vetted, yet torch cannot load it
                return result("corrupt", self._error(exc, "get_attr targets unreadable: "))
            targets = (golden_targets, flows.get_attr_targets(model))
            diff = compare_sets(*targets).merge(diff)
        return self._judged(case, kind, backend, golden, obtained, diff, shared, noted, targets,
                            loaded=(kind, backend, model))

    def _judged(self, case, kind, backend, golden, obtained, diff: Diff, shared, noted, targets=None,
                loaded=None) -> Evaluation:
        """The Evaluation of an output that was obtained: verdict, figures, distance to fbgemm."""
        verdict, message = self.layout.judge(case, golden, obtained, diff)
        cross = self._cross(case, backend, obtained, diff, shared)
        reference = self._reference(case, shared, loaded)
        to_ref = None if isinstance(reference, str) or reference is None else compare(reference, obtained)
        result = self._result(
            case, kind, backend, verdict, message,
            max_abs_diff=diff.max_abs_diff, max_step_diff=diff.max_step_diff,
            mismatched=diff.mismatched, total=diff.total, max_ulp_diff=diff.max_ulp_diff,
            vs_fbgemm_max_abs_diff=cross.max_abs_diff if cross else None,
            vs_fbgemm_max_step_diff=cross.max_step_diff if cross else None,
            vs_fbgemm_mismatched=cross.mismatched if cross else None,
            vs_reference_max_abs_diff=to_ref.max_abs_diff if to_ref else None,
            vs_reference_max_step_diff=to_ref.max_step_diff if to_ref else None,
            vs_reference_mismatched=to_ref.mismatched if to_ref else None,
            warnings=noted,
        )
        return Evaluation(result, golden, obtained, targets)

    def evaluate_model(self, case: Case, backend: str, example) -> Evaluation:
        """Judge the model as ``case.build`` makes it today against this set's golden output.

        This is the snapshot question next to the artifacts' backward-compatibility one:
        does today's code, on today's torch, still give the golden output? ``example`` is
        the input the caller would use now; a golden made from another input is stale.
        """
        def result(verdict, message="", **figures):
            return Evaluation(self._result(case, "model", backend, verdict, message, **figures))

        files = self._case_files(case)
        if files.problem is not None:
            return result(*files.problem)
        unable = stacks.build_problem(case)
        if unable:
            return result("skip", f"torch {self.runtime} cannot build it: {unable}")
        if backend != "any" and backend not in self.have:
            return result("skip", f"torch {self.runtime} has no {backend} engine")
        problem = self.layout.backend_problem(case, backend)
        if problem:
            return result("skip", problem)
        stale = compare(files.example, example, where="input")
        if not stale.ok:
            return result("drift", f"the example input is not the one the golden was made with ({stale.message}): "
                                   "make it the same on every run (torch.manual_seed before drawing it, or fixed "
                                   "values); the stored artifacts were replayed on the golden's own input")
        try:
            golden = self._expected(case, backend, files)
        except GoldenError as exc:
            return result(exc.verdict, str(exc))
        with quiet() as caught, engine(backend), _threads_for(backend, self.options.onednn_threads):
            try:
                obtained = case.forward(flows.runnable(case, flows.build(case), files.example), files.example)
            except Exception as exc:
                return result("load-error", self._error(exc, "building or running the model failed: "))
        diff = compare(golden, obtained, self._tolerance(case))
        if "state" not in files.decoded:  # once per case, under the engine the golden state_dict was made with
            files.decoded["state"] = self._state_diff(case, files.example)
        state = files.decoded["state"]
        if isinstance(state, GoldenError):
            return result(state.verdict, str(state))
        if state is not None:
            diff = Diff().merge(diff).merge(state)
        return self._judged(case, "model", backend, golden, obtained, diff, files, runtime_warnings(caught))

    def _state_diff(self, case: Case, example):
        """Today's model's state_dict against the golden one (where the case keeps one), so a
        changed weight, scale or zero point is caught even where it does not reach the output;
        None where there is none to compare, a GoldenError where the golden's cannot be read. The
        model is built under the engine the golden's artifacts were made under (the first this
        torch has): packed weights unpack with that engine's float types."""
        name = self.layout.artifact_file(case, "state_dict")
        if "state_dict" not in case.artifacts or not self.layout.golden.exists(name):
            return None
        try:
            with quiet(), engine(self.have[0] if self.have else None):
                golden = load_weights(self.layout.golden.read(name, kind="state_dict"))
                current = flows.runnable(case, flows.build(case), example).state_dict()
        except GoldenError as exc:
            return exc
        except Exception as exc:
            return GoldenError(f"the golden state_dict cannot be compared: {one_line(exc)}")
        if not isinstance(golden, dict):
            return None
        return compare_state(golden, dict(current), self._tolerance(case))

    def _reference(self, case: Case, shared: _CaseFiles, loaded=None):
        """The reference kernels' output for this golden's weights and input (once per case),
        or why there is none. The model comes from the golden's first artifact in
        ``REFERENCE_SOURCES`` order (a state_dict loaded into today's module tree, a package's
        model quantized again today, an export, else the TorchScript file itself) and runs with
        every quantized module and call done by harness.reference."""
        from harness import reference

        if shared.reference is not None:
            return shared.reference
        sources = [k for k in REFERENCE_SOURCES if k in case.artifacts]
        if not self.layout.reference or not sources:
            shared.reference = "the reference runs the cases of our layout, from a golden's model"
            return shared.reference
        for source in sources:  # the first that loads here (a state_dict needs its classes; a script does not)
            unable = runtime_problem(case, source)  # asked first: no file read for a model not buildable here
            data = None if unable else self._artifact(case, source, shared)
            if unable or isinstance(data, tuple):
                if shared.reference is None:
                    shared.reference = f"{source}: {unable or data[1]}"
                continue
            engine_name = "fbgemm" if "fbgemm" in self.have else None
            try:
                with quiet(), engine(engine_name):
                    model = self._reusable(source, engine_name, loaded) or self._load(case, source, data, shared)
                    shared.reference = reference.reference_output(model, shared.example, case.forward)
            except reference.Unsupported as exc:
                shared.reference = str(exc)
            except Exception as exc:
                shared.reference = f"reference failed: {one_line(exc)}"
            break
        return shared.reference

    @staticmethod
    def _reusable(source: str, engine_name, loaded):
        """The model this result just loaded and ran, where it is what the reference would load:
        a TorchScript file (run as it is, under a dispatch mode that leaves it unchanged) loaded
        under the reference's engine. A module tree is not reused: the reference rewrites it."""
        from harness.goldens.vetting import TORCHSCRIPT_KINDS

        if loaded is None or source not in TORCHSCRIPT_KINDS:
            return None
        kind, backend, model = loaded
        return model if (kind, backend) == (source, engine_name) else None

    def _cross(self, case: Case, backend: str, obtained, diff: Diff, shared: _CaseFiles) -> Diff | None:
        """The obtained output against the fbgemm golden (exact), or None where there is none."""
        if backend in ("fbgemm", "any"):
            return None
        try:
            reference = self._expected(case, "fbgemm", shared)
        except GoldenError:
            return None
        return compare(reference, obtained)


def open_golden(layout, root: Path, version: str, options: Options) -> GoldenSet:
    """The golden set ``version`` under ``root`` as ``layout`` (a class of harness.goldens.layout) finds it."""
    return GoldenSet.open(layout.set_dir(root, version), version, required=layout.manifest_required,
                          trust_unverified=options.trust_unverified, trust_code=options.trust_goldens,
                          operators=frozenset(options.operators))


def open_replayer(layout, root: Path, version: str, cases: list[Case], options: Options) -> Replayer:
    """The one way to make a Replayer: the golden set ``version`` under ``root``, read through
    ``layout``, for the cases that layout covers."""
    return Replayer(layout(open_golden(layout, root, version, options)), [c for c in cases if layout.covers(c)],
                    options)


# --- one result in a crash-safe child (harness.sandbox): the pytest plugin's catalog items ---------

_OPEN: dict[tuple, Replayer] = {}
_THREADS: list[int] = []  # the child's own torch thread count, read once


def evaluate_in_child(request: dict, at) -> Iterator[Evaluation]:
    """In a harness.sandbox child: the Evaluation of one (golden version, case, kind, backend).

    ``request`` names the store (``root``, ``layout``, ``fixtures``), the Options, the result and
    ``context`` (replayers are kept while it stays the same); ``share``: torch threads for this
    check (an xdist worker's share of the cores; onednn keeps the child's own count, as a serial
    run would); ``crashed``: a cause where this result killed an earlier child."""
    import torch

    from harness.catalog import load_catalog
    from harness.goldens.layout import LAYOUTS

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
