"""Scheduling a replay: every golden set of a store, as units of (golden version, case), over
shards and worker processes, in the order a serial run gives; and PyTorch's flat directory.

Each unit is replayed by a harness.replayer.Replayer; this module decides which units run,
where, and in what order, and keeps the golden count guard (a manifest's promises are kept).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .catalog import Case
from .compat import torch_release
from .layout import HarnessLayout, PyTorchLayout
from .replayer import Options, Replayer, open_replayer
from .results import Result
from .shard import Unit
from .store import GoldenSet, GoldenStore, stray_problem
from .versions import parse_version


def replay_store(store: GoldenStore, cases: list[Case], options: Options, *, jobs: int | None = 1,
                 shard: tuple[int, int] | None = None, fixtures: Path | None = None,
                 timings: dict | None = None) -> Iterator[Result]:
    """Replay every golden version in ``store``; those of newer torch versions are marked forward.

    The work is a list of units, one per (golden version, case) (see harness.shard). ``shard``
    (K, N) keeps only the units of shard K of N. ``jobs`` > 1 replays units in that many
    worker processes, which load the catalog from ``fixtures``; the results come back in the
    serial order, identical to a serial run; ``None`` chooses (harness.shard.auto_jobs).
    ``timings``, if given, receives each unit's seconds.
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
    groups = by_case(units)
    yield from _in_serial_order(units, groups, (_run_group(runner, g) for g in groups), timings)


def by_case(units: list[Unit]) -> list[list[Unit]]:
    """The units grouped by case, in order of first appearance, each group oldest version first.

    Units run a case at a time: one case's golden versions share what a process builds for the
    case (flows.skeleton, per engine), which a run in the serial order (version by version)
    would build again for each version, or hold for every case at once.
    """
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.case, []).append(unit)
    return list(groups.values())


def _in_serial_order(units: list[Unit], groups: list[list[Unit]], outcomes, timings: dict | None) -> Iterator[Result]:
    """The results of ``units`` in their order, from ``outcomes``: per group of ``groups``, in
    that order, each unit's (results, seconds); the seconds go to ``timings``."""
    done = {}
    for group, outcome in zip(groups, outcomes):
        for unit, (found, seconds) in zip(group, outcome):
            done[unit] = found
            if timings is not None:
                timings[unit] = seconds
    for unit in units:
        yield from done[unit]


def _run_group(runner: "_UnitRunner", group: list[Unit]) -> list[tuple[list[Result], float]]:
    """Each unit's results and seconds."""
    out = []
    for unit in group:
        started = time.perf_counter()
        found = runner.run(unit)
        out.append((found, time.perf_counter() - started))
    return out


class _UnitRunner:
    """Plans a store's units and replays them one at a time, opening each version once."""

    def __init__(self, store: GoldenStore, cases: list[Case], options: Options):
        self.store, self.options = store, options
        self.by_id = {c.id: c for c in cases}
        self.runtime = parse_version(torch_release())
        self._sets: dict[str, tuple[GoldenSet, Replayer]] = {}

    def _set(self, version: str) -> tuple[GoldenSet, Replayer]:
        if version not in self._sets:
            replayer = open_replayer(HarnessLayout, self.store.root, version, list(self.by_id.values()), self.options)
            self._sets[version] = (replayer.layout.golden, replayer)
        return self._sets[version]

    def plan(self) -> list[Unit]:
        """The units in serial order: misnamed directories, then each version (oldest first)
        with its catalog cases in catalog order and the cases only its manifest names."""
        from .catalog import select

        versions, stray = self.store.versions()
        units = [Unit(name, "*") for name in stray if self.options.versions is None]
        for version in versions:
            if parse_version(version) > self.runtime and not self.options.forward:
                continue
            if self.options.versions is not None and version not in self.options.versions:
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
    if entry is not None and entry.malformed and case_id not in by_id:  # a catalog case says so itself
        yield Result(case_id, "*", "*", golden.version, torch_release(), "corrupt",
                     f"the manifest's entry for {case_id} is malformed: {entry.malformed}")
    if entry is None or entry.malformed or entry.skipped:
        return
    wanted = options.backends
    for kind in entry.artifacts:
        for backend, status in entry.backends.items():
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


def _work(group: list[Unit]) -> list[tuple[list[Result], float]]:
    return _run_group(_WORKER, group)


def _replay_parallel(store, units, costs, case_ids, options, jobs, fixtures, timings) -> Iterator[Result]:
    """Cases (each with its units) spread over ``jobs`` spawned workers, costliest first; results
    in serial order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    import torch

    from .shard import estimate

    cost = estimate(units, costs)
    groups = by_case(units)
    options = replace(options, onednn_threads=torch.get_num_threads())
    # Workers idle their OpenMP threads passively: busy-waiting threads of one worker steal the
    # cores the other needs (-k linear, -j 2 with 2 threads per worker: 21.8 s spinning, 17.5 s passive).
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                 initargs=(str(store.root), str(fixtures), case_ids, options)) as pool:
            # the costliest case first, so that the last to finish is a cheap one
            ordered = sorted(groups, key=lambda g: (-sum(cost[u] for u in g), g[0].case))
            futures = {g[0].case: pool.submit(_work, g) for g in ordered}
            yield from _in_serial_order(units, groups, (futures[g[0].case].result() for g in groups), timings)
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


@dataclass(frozen=True)
class _Named:
    """Just an id, for selecting manifest entries with the catalog's -k rules."""

    id: str


def replay_pytorch_dir(directory, cases: list[Case], options: Options) -> Iterator[Result]:
    """Replay a flat directory in PyTorch's naming; only cases that have a PyTorch test."""
    replayer = open_replayer(PyTorchLayout, Path(directory), PyTorchLayout.single_set, cases, options)
    golden = replayer.layout.golden
    if golden.manifest_error:
        yield Result("*", "*", "*", golden.version, torch_release(), "corrupt", golden.manifest_error,
                     layout=PyTorchLayout.name)
        return
    if golden.manifest is not None and golden.manifest.torch:
        golden.version = f"{golden.version}@{golden.manifest.torch}"  # the torch that made them, as pinned
    yield from replayer.run()
