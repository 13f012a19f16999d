"""Replaying goldens: load each artifact under each backend, run it, and judge it into Results."""

from __future__ import annotations

import os
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import flows, machine
from .artifacts import CODE_CARRYING, KINDS, file_name
from .catalog import Case
from .compare import Diff, compare, compare_sets, pytorch_verdict
from .compat import flow_problem, has_avx512_vnni, kind_problem, torch_release
from .engines import engine, supported_engines
from .notices import quiet, runtime_warnings
from .safeload import CannotLoadSafely, load_weights
from .store import parse_version
from .generate import expected_name
from .results import COMPARED, Result, one_line
from .shard import Unit
from .store import GoldenError, GoldenSet, GoldenStore, stray_problem


@dataclass
class Options:
    backends: list[str] | None = None  # None: every engine this torch supports
    verbose: bool = False
    trust_unverified: bool = False
    known: list = field(default_factory=list)  # harness.known.KnownDrift entries
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


class HarnessLayout:
    """Our own layout: ``<case>/<kind>.pt`` and one ``expected.<backend>.pt`` per backend."""

    name = "harness"

    def __init__(self, golden: GoldenSet):
        self.golden = golden

    def case_problem(self, case: Case) -> tuple[str, str] | None:
        """(verdict, reason) when a case cannot be replayed from this set at all."""
        entry = self.golden.cases.get(case.id)
        version = self.golden.version
        if entry is None:
            if parse_version(version) < parse_version(case.min_torch):
                return "skip", f"needs torch >= {case.min_torch}; goldens are from {version}"
            if version == torch_release():
                return "missing", f"no golden for this case; run: regenerate-goldens -k {case.id}"
            return "skip", f"torch {version} goldens predate this case"
        if entry.get("skipped"):
            return "skip", f"torch {version} could not make it: {entry['skipped']}"
        return None

    def artifacts(self, case: Case) -> list[tuple[str, str | None]]:
        skipped = self.golden.cases.get(case.id, {}).get("skipped_artifacts", {})
        return [(kind, skipped.get(kind)) for kind in case.artifacts]

    def backend_problem(self, case: Case, backend: str) -> str | None:
        status = self.golden.cases.get(case.id, {}).get("backends", {}).get(backend)
        if status is None:
            return f"torch {self.golden.version} recorded no {backend} golden"
        return None if status == "ok" else status

    def input_file(self, case: Case) -> str:
        return f"{case.id}/input.pt"

    def artifact_file(self, case: Case, kind: str) -> str:
        return f"{case.id}/{file_name(kind)}"

    def expected_file(self, case: Case, backend: str) -> str:
        return expected_name(case.id, backend)

    def get_attr_file(self, case: Case) -> str:
        return f"{case.id}/get_attr_targets.pt"

    def judge(self, case: Case, golden, obtained, diff: Diff) -> tuple[str, str]:
        verdict = diff.verdict
        if verdict != "drift" or diff.max_abs_diff is None:  # a shape or type change is no machine's doing
            return verdict, diff.message
        return verdict, diff.message + self._machine_note()

    def machine_skip(self, case: Case) -> str | None:
        """Why every outcome of ``case`` is a skip on this machine (never, in our layout)."""
        return None

    def _machine_note(self) -> str:
        """Where the golden came from another machine, say so: it is a likely cause of a drift."""
        changed = machine.differences(machine.of_manifest(self.golden.manifest), machine.current())
        if not changed:
            return ""
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        return f" (golden made on another machine: {shown})"


class PyTorchLayout:
    """PyTorch's flat ``TestSerialization.<test>[_<sub>].<kind>.pt`` files, judged as its tests judge."""

    name = "pytorch"

    def __init__(self, golden: GoldenSet):
        self.golden = golden

    @staticmethod
    def stem(case: Case) -> str:
        return case.pytorch.stem

    def case_problem(self, case: Case) -> tuple[str, str] | None:
        if case.pytorch is None:
            return None  # filtered out before
        if not self.golden.exists(self.input_file(case)):
            return "missing", f"{self.input_file(case)} is not in the directory"
        return None

    def artifacts(self, case: Case) -> list[tuple[str, str | None]]:
        return [(kind, None) for kind in case.artifacts]

    def backend_problem(self, case: Case, backend: str) -> str | None:
        if case.pytorch.fbgemm_only and backend != "fbgemm":
            return f"PyTorch's {case.pytorch.method} runs only when qengine_is_fbgemm()"
        return None

    def input_file(self, case: Case) -> str:
        return f"{self.stem(case)}.input.pt"

    def artifact_file(self, case: Case, kind: str) -> str:
        return f"{self.stem(case)}.{kind}.pt"

    def expected_file(self, case: Case, backend: str) -> str:
        return f"{self.stem(case)}.expected.pt"  # PyTorch keeps one, made under fbgemm

    def get_attr_file(self, case: Case) -> str:
        return f"{self.stem(case)}.get_attr_targets.pt"

    def judge(self, case: Case, golden, obtained, diff: Diff) -> tuple[str, str]:
        if diff.reasons and diff.reasons[0].startswith("get_attr targets"):
            return "drift", diff.reasons[0]
        failure = pytorch_verdict(golden, obtained, case.pytorch.compare)
        return ("pass", "") if failure is None else ("drift", failure + (f" — {diff.message}" if diff.message else ""))

    def machine_skip(self, case: Case) -> str | None:
        """PyTorch skips some tests on some CPUs; then so does every outcome of the case here."""
        if case.pytorch is not None and case.pytorch.skip_on_avx512_vnni and has_avx512_vnni():
            return f"PyTorch skips {case.pytorch.method} on AVX512-VNNI CPUs (pytorch#59098)"
        return None


#: flows whose models are eager module trees the reference kernels can run
REFERENCE_FLOWS = frozenset({"eager", "dynamic", "qat"})

#: kinds whose replay re-runs the case's flow on today's torch (a state_dict loads into today's
#: conversion of an FX model; a package re-runs prepare_fx/convert_fx)
_REBUILDS = frozenset({"state_dict", "package"})


def runtime_problem(case: Case, kind: str) -> str | None:
    """Why this torch cannot replay ``kind`` of ``case`` at all, or None."""
    return kind_problem(kind) or (flow_problem(case.flow) if kind in _REBUILDS else None)


@dataclass
class _CaseFiles:
    """What a case's replay reads once and shares across artifacts and backends."""

    problem: tuple[str, str] | None = None  # (verdict, reason) for every result of the case
    example: object = None
    artifacts: dict = field(default_factory=dict)  # kind -> bytes, or (verdict, reason)
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
        self._machines = machine.pair(machine.of_manifest(layout.golden.manifest), machine.current())

    def _result(self, case: Case, artifact: str, backend: str, verdict: str, message: str = "", **figures):
        """Every result of a replay is made here: machine-dependent skips, machines, known drifts."""
        pytorch_test = case.pytorch.method if self.layout.name == "pytorch" and case.pytorch else None
        skip = self.layout.machine_skip(case)
        if skip and verdict in (*COMPARED, "load-error"):
            # the replay's own finding stays in the message, as information
            verdict, message = "skip", f"{skip}; replayed anyway: {verdict}{': ' + message if message else ''}"
        if verdict in COMPARED and self._machines:
            figures["golden_machine"], figures["runtime_machine"] = self._machines
        result = Result(case.id, artifact, backend, self.layout.golden.version, self.runtime, verdict,
                        message, layout=self.layout.name, pytorch_test=pytorch_test, **figures)
        if self.options.known and verdict in ("drift", "load-error"):
            from .known import mark

            mark(result, self.options.known)
        return result

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

    def replay_case(self, case: Case) -> Iterator[Result]:
        for kind, _ in self.layout.artifacts(case):
            for backend in self.backends_for(case):
                yield self.evaluate(case, kind, backend).result

    def _case_files(self, case: Case) -> _CaseFiles:
        """Read (once) what every result of a case needs: its standing and its input."""
        files = self._files.get(case.id)
        if files is not None:
            return files
        if len(self._files) >= self.CACHE:
            self._files.pop(next(iter(self._files)))
        files = self._files[case.id] = _CaseFiles()
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
                    files.artifacts[kind] = self.layout.golden.read(
                        self.layout.artifact_file(case, kind), code=kind in CODE_CARRYING)
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
        problem = layout.backend_problem(case, backend)
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
                model = KINDS[kind].load(case, data, example)
            except CannotLoadSafely as exc:
                return result("skip", str(exc))
            except Exception as exc:
                return result("load-error", self._error(exc))
            if not case.check_numerics:
                return result("pass", "loaded; the case checks loading only")
            try:
                obtained = case.forward(model, example) if layout.name == "harness" else model(example)
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
            targets = (golden_targets, flows.get_attr_targets(model))
            diff = compare_sets(*targets).merge(diff)
        return self._judged(case, kind, backend, golden, obtained, diff, shared, noted, targets)

    def _judged(self, case, kind, backend, golden, obtained, diff: Diff, shared, noted, targets=None) -> Evaluation:
        """The Evaluation of an output that was obtained: verdict, figures, distance to fbgemm."""
        verdict, message = self.layout.judge(case, golden, obtained, diff)
        cross = self._cross(case, backend, obtained, diff, shared)
        reference = self._reference(case, shared)
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
        if flow_problem(case.flow):
            return result("skip", f"torch {self.runtime} cannot build it: {flow_problem(case.flow)}")
        if backend != "any" and backend not in self.have:
            return result("skip", f"torch {self.runtime} has no {backend} engine")
        problem = self.layout.backend_problem(case, backend)
        if problem:
            return result("skip", problem)
        stale = compare(files.example, example, where="input")
        if not stale.ok:
            return result("drift", f"the example input is not the golden's: {stale.message}")
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
        return self._judged(case, "model", backend, golden, obtained, diff, files, runtime_warnings(caught))

    def _reference(self, case: Case, shared: _CaseFiles):
        """The reference kernels' output for this golden's weights and input (once per case),
        or why there is none: the golden state_dict, loaded into today's module tree, runs with
        its quantized modules replaced by harness.reference ops."""
        if shared.reference is not None:
            return shared.reference
        if self.layout.name != "harness" or case.flow not in REFERENCE_FLOWS or "state_dict" not in case.artifacts:
            shared.reference = "the reference runs eager module trees restored from a state_dict"
            return shared.reference
        data = self._artifact(case, "state_dict", shared)
        if isinstance(data, tuple):
            shared.reference = f"state_dict: {data[1]}"
            return shared.reference
        from . import reference

        try:
            with quiet(), engine("fbgemm" if "fbgemm" in self.have else None):
                model = KINDS["state_dict"].load(case, data, shared.example)
                shared.reference = reference.reference_output(model, shared.example)
        except reference.Unsupported as exc:
            shared.reference = str(exc)
        except Exception as exc:
            shared.reference = f"reference failed: {one_line(exc)}"
        return shared.reference

    def _cross(self, case: Case, backend: str, obtained, diff: Diff, shared: _CaseFiles) -> Diff | None:
        """The obtained output against the fbgemm golden (exact), or None where there is none."""
        if backend in ("fbgemm", "any"):
            return None
        try:
            reference = self._expected(case, "fbgemm", shared)
        except GoldenError:
            return None
        return compare(reference, obtained)


def replay_store(store: GoldenStore, cases: list[Case], options: Options, *, jobs: int | None = 1,
                 shard: tuple[int, int] | None = None, fixtures: Path | None = None,
                 timings: dict | None = None) -> Iterator[Result]:
    """Replay every golden version in ``store``; those of newer torch versions are marked forward.

    The work is a list of units, one per (golden version, case) (see harness.shard). ``shard``
    (K, N) keeps only the units of shard K of N. ``jobs`` > 1 replays units in that many
    worker processes, which load the catalog from ``fixtures``; the results come back in the
    serial order, identical to a serial run; ``None`` chooses (harness.shard.auto_jobs). ``timings``, if given, receives each unit's
    seconds.
    """
    from .known import load as load_known
    from .shard import auto_jobs, load_costs, pick

    options.known = options.known or load_known(store.root)
    runner = _UnitRunner(store, cases, options)
    units = runner.plan()
    costs = load_costs(store.root)
    if shard is not None:
        units = pick(units, costs, *shard)
    if jobs is None:
        jobs = auto_jobs(units, costs)
    if jobs > 1 and len(units) > 1:
        if fixtures is None:
            raise ValueError("a parallel replay needs the fixtures directory, to load the catalog in each worker")
        yield from _replay_parallel(store, units, costs, [c.id for c in cases], options, jobs, Path(fixtures), timings)
        return
    for unit in units:
        started = time.perf_counter()
        yield from runner.run(unit)
        if timings is not None:
            timings[unit] = time.perf_counter() - started


class _UnitRunner:
    """Plans a store's units and replays them one at a time, opening each version once."""

    def __init__(self, store: GoldenStore, cases: list[Case], options: Options):
        self.store, self.options = store, options
        self.by_id = {c.id: c for c in cases}
        self.runtime = parse_version(torch_release())
        self._sets: dict[str, tuple[GoldenSet, Replayer]] = {}

    def _set(self, version: str) -> tuple[GoldenSet, Replayer]:
        if version not in self._sets:
            golden = self.store.open(version)
            golden.trust_unverified = self.options.trust_unverified
            self._sets[version] = (golden, Replayer(HarnessLayout(golden), list(self.by_id.values()), self.options))
        return self._sets[version]

    def plan(self) -> list[Unit]:
        """The units in serial order: misnamed directories, then each version (oldest first)
        with its catalog cases in catalog order and the cases only its manifest names."""
        from .catalog import select

        versions, stray = self.store.versions()
        units = [Unit(name, "*") for name in stray]
        for version in versions:
            if parse_version(version) > self.runtime and not self.options.forward:
                continue
            golden, _ = self._set(version)
            if golden.manifest_error:
                units.append(Unit(version, "*"))
                continue
            gone = sorted(set(golden.cases) - set(self.by_id))
            if self.options.patterns:
                gone = [c.id for c in select([_Named(i) for i in gone], self.options.patterns)]
            units += [Unit(version, i) for i in [*self.by_id, *gone]]
        return units

    def run(self, unit: Unit) -> list[Result]:
        version = parse_version(unit.version)
        if version is None:
            return [Result("*", "*", "*", unit.version, torch_release(), "corrupt",
                           stray_problem(self.store.root / unit.version))]
        forward = version > self.runtime
        golden, replayer = self._set(unit.version)
        if golden.manifest_error:
            found = [Result("*", "*", "*", unit.version, torch_release(), "corrupt", golden.manifest_error)]
        else:
            case = self.by_id.get(unit.case)
            found = list(replayer.replay_case(case)) if case is not None else []
            produced = {(r.case, r.artifact, r.backend) for r in found}
            found += _unkept_promises(golden, unit.case, self.by_id, self.options, produced)
        for result in found:
            result.forward = forward
        return found


def _unkept_promises(golden: GoldenSet, case_id: str, by_id: dict, options: Options,
                     produced: set) -> Iterator[Result]:
    """The golden count guard: every result a manifest promises must be there.

    A golden set that quietly shrinks (a case dropped from the catalog, an artifact kind
    dropped from a case) is how a BC suite stops testing anything; each promised
    (case, artifact, backend) that produced no result becomes a ``missing`` result.
    """
    entry = golden.cases.get(case_id)
    if not entry or entry.get("skipped"):
        return
    wanted = options.backends
    for kind in entry.get("artifacts", []):
        for backend, status in entry.get("backends", {}).items():
            if status != "ok" or (wanted and backend != "any" and backend not in wanted):
                continue
            if (case_id, kind, backend) in produced:
                continue
            why = (f"the catalog no longer has case {case_id!r}" if case_id not in by_id
                   else f"case {case_id!r} no longer has the {kind} artifact")
            yield Result(case_id, kind, backend, golden.version, torch_release(), "missing",
                         f"torch {golden.version}'s manifest promises this result, but {why}; "
                         "a golden set must not shrink quietly")


# --- parallel replay: worker processes, each with its own torch and catalog --------------------

_WORKER: _UnitRunner | None = None


def _start_worker(root: str, fixtures: str, case_ids: list[str], options: Options) -> None:
    global _WORKER
    import torch

    from .catalog import load_catalog

    torch.set_num_threads(1)  # options.onednn_threads keeps onednn at the serial run's count
    chosen = set(case_ids)
    cases = [c for c in load_catalog(Path(fixtures)) if c.id in chosen]
    _WORKER = _UnitRunner(GoldenStore(Path(root)), cases, options)


def _work(unit: Unit) -> tuple[list[Result], float]:
    started = time.perf_counter()
    found = _WORKER.run(unit)
    return found, time.perf_counter() - started


def _replay_parallel(store, units, costs, case_ids, options, jobs, fixtures, timings) -> Iterator[Result]:
    """Units spread over ``jobs`` spawned workers, costliest first; results in serial order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    import torch

    from .shard import estimate

    cost = estimate(units, costs)
    options = replace(options, onednn_threads=torch.get_num_threads())
    # Workers idle their OpenMP threads passively: busy-waiting threads of one worker steal the
    # cores the other needs (-k linear, -j 2 with 2 threads per worker: 21.8 s spinning, 17.5 s passive).
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                 initargs=(str(store.root), str(fixtures), case_ids, options)) as pool:
            futures = {u: pool.submit(_work, u) for u in sorted(units, key=lambda u: (-cost[u], u))}
            for unit in units:
                found, seconds = futures[unit].result()
                if timings is not None:
                    timings[unit] = seconds
                yield from found
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


@dataclass(frozen=True)
class _Named:
    """Just an id, for selecting manifest entries with the catalog's -k rules."""

    id: str


def replay_pytorch_dir(directory, cases: list[Case], options: Options) -> Iterator[Result]:
    """Replay a flat directory in PyTorch's naming; only cases that have a PyTorch test."""
    golden = GoldenSet.open(directory, "pytorch", required=False, trust_unverified=options.trust_unverified)
    if golden.manifest_error:
        yield Result("*", "*", "*", "pytorch", torch_release(), "corrupt", golden.manifest_error,
                     layout="pytorch")
        return
    if golden.manifest and golden.manifest.get("torch"):
        golden.version = f"pytorch@{golden.manifest['torch']}"
    pytorch_cases = [c for c in cases if c.pytorch is not None]
    yield from Replayer(PyTorchLayout(golden), pytorch_cases, options).run()
