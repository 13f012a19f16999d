"""The case catalog as pytest items: collecting them, running one, sharding, and the outcome of each."""

from __future__ import annotations

from pathlib import Path
import pytest

from harness.backends import BACKENDS
from harness.pytest_plugin.failures import GoldenFailure, failure_text
from harness.pytest_plugin.session import SESSION, GoldenSession, runtime
from harness.verdicts import Verdict

#: the node id of the catalog's collector, and so the prefix of every catalog item's
CATALOG_NODE = "golden-catalog"

class GoldenCatalog(pytest.Collector):
    """The case catalog as a collector: one item per (case, artifact, backend, golden version)."""

    def collect(self):
        state: GoldenSession = self.config.stash[SESSION]
        from harness.backends import supported_backends

        versions, stray = state.versions()
        cases = [c for c in state.cases() if state.layout_class.covers(c)]
        for name in stray:
            yield StrayGoldenDirectory.from_parent(self, name=f"stray-directory[{name}]",
                                                   directory=state.golden_dir / name)
        if not state.layout_class.single_set:
            from harness.replaying.schedule import intruder_results
            from harness.goldens.store import GoldenStore

            for result in intruder_results(GoldenStore(state.golden_dir)):
                yield StoreIntruder.from_parent(self, name=f"intruder[{result.message.split(': ', 1)[0]}]",
                                                problem=result.message)
        from harness.replaying.recording import absent  # imports torch: not when the plugin loads

        state.catalog_ids = {c.id for c in state.cases()}
        from harness import stacks

        have = supported_backends() or list(BACKENDS)
        for version in versions:
            golden = None if state.layout_class.single_set else state.golden(version)
            for case in cases:
                if absent(golden, case.id):
                    continue
                produced = set()
                for kind in case.artifacts:
                    for backend in ["any"] if case.backend_agnostic else stacks.case_backends(case, state.backends, have):
                        produced.add((case.id, kind, backend))
                        name = f"{case.id}[{kind}-{backend}-from-{version}]"
                        yield GoldenItem.from_parent(self, name=name, case=case, kind=kind,
                                                     backend=backend, version=version)
                for result in _unkept(state, version, case.id, produced):
                    yield UnkeptPromise.from_parent(self, name=f"{case.id}[{result.artifact}-{result.backend}-from-"
                                                    f"{version}]", result=result)


class _GoldenNode(pytest.Item):
    """An item of the golden catalog: named "golden ...", and a GoldenFailure is its own report."""

    def reportinfo(self):
        return self.path, None, f"golden {self.name}"

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GoldenFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


class StrayGoldenDirectory(_GoldenNode):
    """A directory of the golden store named like no torch version: its goldens would never be
    replayed, so it fails rather than being passed over in silence."""

    def __init__(self, *, directory, **kwargs):
        super().__init__(**kwargs)
        self.directory = directory

    def runtest(self):
        from harness.goldens.store import stray_problem

        raise GoldenFailure(stray_problem(self.directory))


class StoreIntruder(_GoldenNode):
    """Something in the golden store that must not be there (Python source, a link, a FIFO): it fails."""

    def __init__(self, *, problem, **kwargs):
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self):
        raise GoldenFailure(self.problem)


def _unkept(state: GoldenSession, version: str, case_id: str, produced: set):
    """What ``version``'s manifest promises of a catalog case that no item of it replays (an
    artifact kind the case dropped): the CLI's rule (harness.replaying.recording.unkept_promises)."""
    if state.layout_class.single_set:
        return []
    golden = state.golden(version)
    if golden is None:
        return []
    from harness.replaying.recording import unkept_promises

    return list(unkept_promises(golden, case_id, state.catalog_ids, state.backends, produced))


class UnkeptPromise(_GoldenNode):
    """A result a golden set's manifest promises for a catalog case that nothing replays any more:
    ``missing``, as ``bc-harness replay`` judges it."""

    def __init__(self, *, result, **kwargs):
        super().__init__(**kwargs)
        self.result = result

    def runtest(self):
        self.config.stash[SESSION].record(self.result, self.nodeid)
        raise GoldenFailure(f"{self.result.verdict}: {self.result.message}")


class GoldenItem(_GoldenNode):
    def __init__(self, *, case, kind, backend, version, **kwargs):
        super().__init__(**kwargs)
        self.case, self.kind, self.backend, self.version = case, kind, backend, version

    def runtest(self):
        state: GoldenSession = self.config.stash[SESSION]
        evaluation = state.evaluate(self.version, self.case, self.kind, self.backend)
        result = evaluation.result
        if result.verdict in (Verdict.MISSING, Verdict.DRIFT) and state.update and state.layout_class.writable \
                and self.version == runtime() and (result.verdict == Verdict.MISSING or state.update == "all"):
            _write_catalog_case(state, self.case, rewrite=result.verdict == Verdict.DRIFT, nodeid=self.nodeid)
            evaluation = state.evaluate(self.version, self.case, self.kind, self.backend)
            result = evaluation.result
        state.record(result, self.nodeid)
        if result.verdict == Verdict.ROUNDING:  # passes; the figures go to the summary and junit-xml
            self.user_properties.append(("golden-rounding", result.message))
        if result.verdict in (Verdict.PASS, Verdict.ROUNDING):
            return
        if result.known:
            pytest.xfail(f"known {result.verdict}: {result.known} ({result.message})")
        if result.verdict == Verdict.SKIP:
            pytest.skip(result.message)
        hint = ""
        if result.verdict == Verdict.MISSING and self.version == runtime():
            hint = (f"\nto create it: regenerate-goldens -k {self.case.id}   "
                    f"(or: {state.command(None, '--golden', '--golden-update-new-only', '-k', self.case.id)})")
        raise GoldenFailure(failure_text(state, [evaluation], self.case.tolerance, self.nodeid) + hint)


def _write_catalog_case(state: GoldenSession, case, *, rewrite: bool, nodeid: str) -> None:
    """Generate one catalog case's goldens for the running torch and write them (harness.making.writing)."""
    from harness.goldens.store import GoldenExists, GoldenStore
    from harness.making.writing import write_goldens

    version = runtime()
    try:
        store = GoldenStore(state.golden_dir)
        written = write_goldens(store, version, [state.generate(case)],
                                state.write_command(nodeid), overwrite=rewrite)
        state.note_write(rewrite, store.root / version / case.id, nodeid, written.changes)
    except GoldenExists:
        pass  # another worker wrote it first: replay against that
    state.forget(version)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    state: GoldenSession = config.stash[SESSION]
    if state.catalog:
        from _pytest.reports import CollectReport

        from harness.catalog import CatalogError

        collector = GoldenCatalog.from_parent(session, name=CATALOG_NODE, path=config.rootpath,
                                              nodeid=CATALOG_NODE)
        try:
            catalog_items = list(collector.collect())
        except CatalogError as exc:  # a usage error: one line, exit status 4
            raise pytest.UsageError(f"--golden: {exc}") from None
        # Report them as collected, so the terminal's counts and -k's deselection include them.
        session.ihook.pytest_collectreport(
            report=CollectReport(collector.nodeid, "passed", None, catalog_items))
        items.extend(catalog_items)
    state.collected.update(item.nodeid for item in items)
    state.collected_files.update(item.nodeid.split("::", 1)[0] for item in items)
    state.partial_files.update(_named_by_node_id(config))


def _named_by_node_id(config) -> set[str]:
    """The files the command line named by node id (``test_x.py::test_a``): only part of each was
    collected, so a golden whose owner is not among it may well still exist."""
    found = set()
    for arg in config.args:
        if "::" not in str(arg):
            continue
        path = (Path(config.invocation_params.dir) / str(arg).split("::", 1)[0]).resolve()
        try:
            found.add(path.relative_to(config.rootpath.resolve()).as_posix())
        except ValueError:
            found.add(path.as_posix())
    return found


class Sharder:
    """--golden-shard K/N: after -k and -m have deselected, keep the items of shard K.

    A catalog item's unit is its (golden version, case), so a case's results stay together; a
    misnamed golden directory is its own unit, and so is every other test (by node id). The
    split is harness.replaying.shard.assign: the same items and costs file always give the same shards.
    """

    def __init__(self, state: GoldenSession):
        self.state = state

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        from harness.replaying.shard import Unit, load_costs, pick

        def unit(item):
            if isinstance(item, GoldenItem):
                return Unit(item.version, item.case.id)
            if isinstance(item, StrayGoldenDirectory):
                return Unit(item.directory.name, "*")
            if isinstance(item, StoreIntruder):
                return Unit("store", item.name)
            return Unit("test", item.nodeid)

        try:
            costs = load_costs(self.state.golden_dir)
        except ValueError as exc:
            raise pytest.UsageError(f"--golden-shard: {exc}") from None
        units = [unit(i) for i in items]
        mine = set(pick(list(dict.fromkeys(units)), costs, *self.state.shard))
        kept = [i for i, u in zip(items, units) if u in mine]
        config.hook.pytest_deselected(items=[i for i, u in zip(items, units) if u not in mine])
        items[:] = kept


def case_scheduling(config, log):
    """xdist's scope scheduling with a catalog case as the scope of its items (node ids
    ``golden-catalog::<case>[...]``) and each other test a scope of its own. The node ids stay
    as they are (xdist's loadgroup would append the group to each).

    A worker that crashes is replaced, as under xdist's ``load``: the test it was running is
    reported as crashed (by xdist) and not run again, and only the tests it had not run go back
    to the queue. xdist's own scope scheduling puts the whole of a dead worker's work back,
    finished scopes as empty units and the crashed test as pending, and then waits for them
    forever (pytest-dev/pytest-xdist#1323, #1378).
    """
    from xdist.scheduler import LoadScopeScheduling

    class CaseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(CATALOG_NODE + "::"):
                return nodeid.split("[", 1)[0]
            return nodeid

        def remove_node(self, node):
            workload = self.assigned_work.pop(node)
            pending = [(scope, nodeid) for scope, unit in workload.items()
                       for nodeid, completed in unit.items() if not completed]
            if not pending:
                return None
            crashed_scope, crashitem = pending[0]  # a worker runs its work in the order it was given
            workload[crashed_scope][crashitem] = True
            for scope, unit in workload.items():
                left = {nodeid: False for nodeid, completed in unit.items() if not completed}
                if left:
                    self.workqueue[scope] = left
                    self.workqueue.move_to_end(scope, last=False)  # first: the test after a crash runs soon
            for other in self.assigned_work:
                self._reschedule(other)
            return crashitem

    return CaseScheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call":
        return
    report = outcome.get_result()
    state: GoldenSession = item.config.stash[SESSION]
    if report.passed:
        if item.nodeid in state.wrote:
            # Nothing was compared: a pass would claim a check that did not happen.
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               "Skipped: golden written in this run; nothing was compared. Re-run to check it.")
        else:
            state.passed.add(item.nodeid)


def pytest_ignore_collect(collection_path, config):
    """A golden store is data, never collected, so pytest imports no conftest.py or test module
    from one (nor anything below it): a directory marked as a store, a directory that holds a
    golden set (``<release>/manifest.json``), a golden set itself, and the session's golden
    directory. The marker alone would not do: whoever can commit a golden can delete it."""
    try:
        if not collection_path.is_dir():
            return None
        if _looks_like_a_store(collection_path):
            return True
        state = config.stash.get(SESSION, None)
        store = state.resolved_golden_dir() if state is not None else None
        if store is not None and collection_path.resolve() == store:
            return True
    except OSError:
        return None
    return None


def _looks_like_a_store(directory) -> bool:
    from harness.goldens.store import GoldenStore
    from harness.versions import parse_version

    if (directory / GoldenStore.MARKER).exists():
        return True
    if parse_version(directory.name) is not None and (directory / "manifest.json").exists():
        return True
    return any(parse_version(child.name) is not None and (child / "manifest.json").exists()
               for child in directory.iterdir() if child.is_dir())
