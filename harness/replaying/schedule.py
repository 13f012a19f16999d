"""Scheduling a replay: every golden set of a store, as units of (golden version, case), over
shards and crash-safe worker processes, in the order a serial run gives; and PyTorch's flat directory.

Each unit is replayed by a harness.replaying.replayer.Replayer in a child process (harness.sandbox): a
result whose loading or running kills its process gets the verdict ``crash``, and a new child
goes on with the unit's remaining results. This module decides which units run, where, and in
what order, and keeps the golden count guard (a manifest's promises are kept).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from harness.catalog import Case
from harness.compat import torch_release
from harness.goldens.layout import HarnessLayout, PyTorchLayout
from harness.replaying.replayer import Replayer, open_golden, open_replayer, owned_cases
from harness.replaying.recording import absent, unkept_promises
from harness.replaying.request import Options
from harness.replaying.results import Result, whole
from harness.sandbox import Sandbox, run_to_end
from harness.replaying.shard import Unit
from harness.goldens.store import GoldenSet, GoldenStore, stray_problem
from harness.versions import parse_version
from harness.verdicts import Verdict

if TYPE_CHECKING:
    from harness.replaying.cache import ResultCache


def replay_store(store: GoldenStore, cases: list[Case], options: Options, *, jobs: int | None = 1,
                 shard: tuple[int, int] | None = None, fixtures: Path | None = None,
                 timings: dict | None = None, isolated: bool | None = None,
                 cache: "ResultCache | None" = None) -> Iterator[Result]:
    """Replay every golden version in ``store``; those of newer torch versions are marked forward.

    The work is a list of units, one per (golden version, case) (see harness.replaying.shard). ``shard``
    (K, N) keeps only the units of shard K of N. The units run in ``jobs`` crash-safe worker
    processes (``None`` chooses: harness.replaying.shard.auto_jobs), which load the catalog from
    ``fixtures`` (None: no catalog, the store's own goldens of pytest tests only); the results come
    back in the serial order, identical for any ``jobs``. ``isolated`` False (the default without
    ``fixtures``: a caller holding cases that no directory declares) runs them in this process,
    where a crash ends it. ``timings``, if given, receives each unit's seconds.
    """
    from harness.goldens.known import load as load_known
    from harness.replaying.shard import auto_jobs, load_costs, pick

    options.known = options.known or load_known(store.root)
    if shard is None or shard[0] == 1:  # once, in the first shard
        yield from intruder_results(store)
    planner = _UnitRunner(store, cases, options)
    units = planner.plan()
    costs = load_costs(store.root)
    if shard is not None:
        units = pick(units, costs, *shard)
    keys = planner.keys(units, cache)
    kept = {u: found for u in units if (found := cache.get(keys[u])) is not None} if cache else {}
    todo = [u for u in units if u not in kept]
    if jobs is None:
        jobs = auto_jobs(todo, costs)
    groups = by_case(todo)
    if not (fixtures is not None if isolated is None else isolated):
        outcomes = (_run_group(planner, g) for g in groups)
    else:
        outcomes = _isolated(store, groups, costs, [c.id for c in cases], options, max(1, jobs),
                             Path(fixtures) if fixtures is not None else None)
    if cache is not None:
        outcomes = _kept_in(cache, keys, groups, outcomes)
    yield from _in_serial_order(units, groups, outcomes, timings, kept)


def intruder_results(store: GoldenStore) -> list[Result]:
    """A corrupt result for each thing that must not be in a golden store (GoldenStore.intruders)."""
    versions = set(store.versions()[0])
    return [whole(where.split("/", 1)[0] if where.split("/", 1)[0] in versions else "store", torch_release(),
                  f"{store.root / where}: {why}") for where, why in store.intruders()]


def by_case(units: list[Unit]) -> list[list[Unit]]:
    """The units grouped by case, in order of first appearance, each group oldest version first.

    Units run a case at a time: one case's golden versions share what a process builds for the
    case (flows.skeleton, per backend), which a run in the serial order (version by version)
    would build again for each version, or hold for every case at once.
    """
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.case, []).append(unit)
    return list(groups.values())


def _kept_in(cache, keys: dict, groups: list[list[Unit]], outcomes):
    """``outcomes``, each unit's results kept in ``cache`` as they come."""
    for group, outcome in zip(groups, outcomes):
        for unit, (found, _) in zip(group, outcome):
            cache.put(keys.get(unit), found)
        yield outcome


def _in_serial_order(units: list[Unit], groups: list[list[Unit]], outcomes, timings: dict | None,
                     kept: dict | None = None) -> Iterator[Result]:
    """The results of ``units`` in their order, from ``kept`` (unit -> results taken from the
    cache) and ``outcomes``: per group of ``groups``, in that order, each unit's (results,
    seconds); the seconds go to ``timings``."""
    done = dict(kept or {})
    for group, outcome in zip(groups, outcomes):
        for unit, (found, seconds) in zip(group, outcome):
            done[unit] = found
            if timings is not None:
                timings[unit] = seconds
    for unit in units:
        yield from done[unit]


def _run_group(runner: "_UnitRunner", group: list[Unit]) -> list[tuple[list[Result], float]]:
    """Each unit's results and seconds, in this process."""
    out = []
    for unit in group:
        started = time.perf_counter()
        found = runner.run(unit)
        out.append((found, time.perf_counter() - started))
    return out


class _UnitRunner:
    """Plans a store's units (in the parent) and replays them one at a time (in a worker),
    opening each version once."""

    def __init__(self, store: GoldenStore, cases: list[Case], options: Options):
        self.store, self.options = store, options
        self.by_id = {c.id: c for c in cases}
        self.runtime = parse_version(torch_release())
        self._goldens: dict[str, GoldenSet] = {}
        self._replayers: dict[str, Replayer] = {}

    def _golden(self, version: str) -> GoldenSet:
        if version not in self._goldens:
            self._goldens[version] = open_golden(HarnessLayout, self.store.root, version, self.options)
        return self._goldens[version]

    def _replayer(self, version: str) -> Replayer:
        """The version's Replayer, on the GoldenSet this runner opened: what reading its manifest
        found (an owned entry naming no flow is malformed) is the same for every unit, whichever
        ran first."""
        if version not in self._replayers:
            self._replayers[version] = open_replayer(HarnessLayout, self.store.root, version,
                                                     list(self.by_id.values()) + self._owned(version), self.options,
                                                     self._golden(version))
        return self._replayers[version]

    def _owned(self, version: str) -> list[Case]:
        """The set's goldens owned by pytest tests (the plugin's), as cases without a builder."""
        golden = self._golden(version)
        return [] if golden.manifest_error else owned_cases(golden, set(self.by_id))

    def plan(self) -> list[Unit]:
        """The units in serial order: misnamed directories, then each version (oldest first)
        with its catalog cases in catalog order and the cases only its manifest names."""
        from harness.catalog import select

        versions, stray = self.store.versions()
        units = [Unit(name, "*") for name in stray if self.options.versions is None]
        for version in versions:
            if parse_version(version) > self.runtime and not self.options.forward:
                continue
            if self.options.versions is not None and version not in self.options.versions:
                continue
            golden = self._golden(version)
            if golden.manifest_error:
                units.append(Unit(version, "*"))
                continue
            owned = {c.id for c in self._owned(version)}
            gone = sorted(set(golden.cases) - set(self.by_id) - owned)
            if self.options.patterns:
                gone = [c.id for c in select([_Named(i) for i in gone], self.options.patterns)]
            held = [i for i in self.by_id if not absent(golden, i)]
            units += [Unit(version, i) for i in [*held, *sorted(i for i in owned if self._selected(i)), *gone]]
        return units

    def keys(self, units: list[Unit], cache) -> dict:
        """Each unit's key in ``cache`` (harness.replaying.cache; None: not to be kept); empty without a cache."""
        if cache is None:
            return {}
        from harness.goldens.layout import case_dir
        from harness.replaying.cache import unit_key

        def directory(u: Unit) -> Path:
            return HarnessLayout.set_dir(self.store.root, u.version) / case_dir(u.case)

        return {u: unit_key(cache.context, self._golden(u.version), directory(u),
                            u.case, u.case in self.by_id) if parse_version(u.version) is not None else None
                for u in units}

    def run(self, unit: Unit, skip=frozenset(), crashed=None, at=None) -> list[Result]:
        """The unit's results (see Replayer.replay_case for ``skip``, ``crashed`` and ``at``)."""
        version = parse_version(unit.version)
        if version is None:
            return [whole(unit.version, torch_release(), stray_problem(self.store.root / unit.version))]
        forward = version > self.runtime
        golden = self._golden(unit.version)
        if golden.manifest_error:
            found = [whole(unit.version, torch_release(), golden.manifest_error)]
        else:
            replayer = self._replayer(unit.version)
            case = self.by_id.get(unit.case) or next((c for c in replayer.cases if c.id == unit.case), None)
            found = list(replayer.replay_case(case, skip, crashed, at)) if case is not None else []
            produced = {(r.case, r.artifact, r.backend) for r in found}
            produced |= {(c, k, b) for v, c, k, b in skip if v == unit.version}
            found += unkept_promises(golden, unit.case, set(self.by_id), self.options.backends, produced)
        for result in found:
            result.forward = forward
        return found

    def _selected(self, case_id: str) -> bool:
        from harness.catalog import select

        return not self.options.patterns or bool(select([_Named(case_id)], self.options.patterns))


# --- crash-safe replay: worker processes, each with its own torch and catalog ---------------------

#: a unit whose worker dies this many times outside any result is given up as a whole
_DEATHS_OUTSIDE_RESULTS = 2


def _isolated(store, groups, costs, case_ids, options, jobs, fixtures) -> Iterator[list]:
    """Each group's outcome (see _run_group), in the order of ``groups``, replayed in ``jobs``
    crash-safe workers (harness.sandbox), the costliest case first so that the last to finish
    is a cheap one."""
    from harness.replaying.shard import estimate

    cost = estimate([u for g in groups for u in g], costs)
    request = {"context": f"{os.getpid()}-{id(groups)}-{time.monotonic_ns()}", "root": str(store.root),
               "fixtures": str(fixtures) if fixtures is not None else None, "case_ids": case_ids, "options": options,
               "jobs": jobs}
    if jobs > 1:
        # Workers idle their OpenMP threads passively: busy-waiting threads of one worker steal the
        # cores the other needs (-k linear, -j 2 with 2 threads per worker: 21.8 s spinning, 17.5 s
        # passive). Read when the fork server imports torch, so set before the first worker starts.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    boxes, local = [], threading.local()

    def work(group):
        if not hasattr(local, "box"):
            local.box = Sandbox(options.result_timeout)
            boxes.append(local.box)
        return _group_in(local.box, group, request)

    ordered = sorted(groups, key=lambda g: (-sum(cost[u] for u in g), g[0].case))
    try:
        with ThreadPoolExecutor(min(jobs, len(groups)) or 1) as pool:
            futures = {g[0].case: pool.submit(work, g) for g in ordered}
            for group in groups:
                yield futures[group[0].case].result()
    finally:
        for box in boxes:
            box.close()


def _group_in(box: Sandbox, group: list[Unit], request: dict) -> list[tuple[list[Result], float]]:
    """One group's outcome from a worker; after a crash, a new worker goes on where it stopped,
    the result being judged when it died given the verdict ``crash``."""
    found = {i: [] for i in range(len(group))}
    seconds = dict.fromkeys(range(len(group)), 0.0)
    payload = {**request, "group": group, "skip": set()}

    def take(item):
        tag, index, value = item
        if tag == "unit":
            seconds[index] += value
            return
        found[index].append(value)
        payload["skip"].add((value.golden_version, value.case, value.artifact, value.backend))

    given_up = run_to_end(box, "harness.replaying.schedule:_replay_group", payload, take, _DEATHS_OUTSIDE_RESULTS)
    if given_up:
        _give_up(group, found, given_up)
    return [(found[i], seconds[i]) for i in range(len(group))]


def _give_up(group: list[Unit], found: dict, cause: str) -> None:
    """The units of a group whose worker keeps dying between results: one crash result for each
    unit not replayed to its end."""
    for index, unit in enumerate(group):
        if not found[index]:
            found[index].append(Result(unit.case, "*", "*", unit.version, torch_release(), Verdict.CRASH,
                                       f"the replay worker gave up on the unit: {cause}; its results were not "
                                       "replayed"))


_RUNNERS: dict[str, _UnitRunner] = {}


def _replay_group(request: dict, at) -> Iterator[tuple]:
    """In a worker (harness.sandbox): a group's results as ("result", unit index, Result), and
    each unit's seconds as ("unit", unit index, seconds)."""
    runner = _worker_runner(request)
    for index, unit in enumerate(request["group"]):
        started = time.perf_counter()
        for result in runner.run(unit, request["skip"], request["crashed"], at):
            yield "result", index, result
        yield "unit", index, time.perf_counter() - started


def _worker_runner(request: dict) -> _UnitRunner:
    """The worker's runner for one replay (kept while the replay lasts; a worker serves one at a time)."""
    runner = _RUNNERS.get(request["context"])
    if runner is None:
        import torch

        from harness.catalog import load_catalog

        options = request["options"]
        if request["jobs"] > 1:  # a share of the cores; onednn keeps the serial run's count
            options = replace(options, onednn_threads=torch.get_num_threads())
            torch.set_num_threads(1)
        chosen = set(request["case_ids"])
        catalog = load_catalog(Path(request["fixtures"])) if request["fixtures"] is not None else []
        cases = [c for c in catalog if c.id in chosen]
        _RUNNERS.clear()
        runner = _RUNNERS[request["context"]] = _UnitRunner(GoldenStore(Path(request["root"])), cases, options)
    return runner


@dataclass(frozen=True)
class _Named:
    """Just an id, for selecting manifest entries with the catalog's -k rules."""

    id: str


def replay_pytorch_dir(directory, cases: list[Case], options: Options, fixtures: Path | None = None) -> Iterator[Result]:
    """Replay a flat directory in PyTorch's naming; only cases that have a PyTorch test. With the
    catalog's ``fixtures`` directory, in a crash-safe worker (as replay_store does)."""
    if fixtures is None:
        yield from _pytorch_dir_results({"directory": str(directory), "cases": cases, "options": options,
                                         "skip": set(), "crashed": {}}, None)
        return
    found = []
    payload = {"directory": str(directory), "fixtures": str(fixtures), "case_ids": [c.id for c in cases],
               "options": options, "skip": set()}

    def take(result):
        found.append(result)
        payload["skip"].add((result.golden_version, result.case, result.artifact, result.backend))

    box = Sandbox(options.result_timeout)
    try:
        given_up = run_to_end(box, "harness.replaying.schedule:_pytorch_dir_results", payload, take, _DEATHS_OUTSIDE_RESULTS)
    finally:
        box.close()
    if given_up:
        found.append(Result("*", "*", "*", PyTorchLayout.single_set, torch_release(), Verdict.CRASH,
                            f"the replay worker gave up: {given_up}",
                            layout=PyTorchLayout.name))
    yield from found


def _pytorch_dir_results(request: dict, at) -> Iterator[Result]:
    """The PyTorch directory's results, in this process or a worker (harness.sandbox)."""
    cases = request.get("cases")
    if cases is None:
        from harness.catalog import load_catalog

        chosen = set(request["case_ids"])
        cases = [c for c in load_catalog(Path(request["fixtures"])) if c.id in chosen]
    replayer = open_replayer(PyTorchLayout, Path(request["directory"]), PyTorchLayout.single_set, cases,
                             request["options"])
    golden = replayer.layout.golden
    if golden.manifest_error:
        yield whole(golden.version, torch_release(), golden.manifest_error, layout=PyTorchLayout.name)
        return
    if golden.manifest is not None and golden.manifest.torch:
        golden.version = f"{golden.version}@{golden.manifest.torch}"  # the torch that made them, as pinned
    for case in replayer.cases:
        yield from replayer.replay_case(case, request["skip"], request["crashed"], at)
