"""pytest plugin: the ``golden`` fixture, the catalog as tests, updating, CI mode, xdist.

Importing this module imports neither torch nor the rest of the harness: they are
imported when a golden test runs, so installing the harness costs unrelated runs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .engines import ENGINE_ORDER

#: Environment variables that mean "this is a CI machine" (any value but a false one).
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "TF_BUILD", "TEAMCITY_VERSION", "BITBUCKET_BUILD_NUMBER", "APPVEYOR", "CODEBUILD_BUILD_ID",
                "DRONE", "SEMAPHORE", "BUILD_BUILDID")
_FALSE = ("", "0", "false", "no", "off")


def ci_environment(environ=None) -> str | None:
    """The CI variable that is set, or None on a developer's machine."""
    environ = os.environ if environ is None else environ
    for name in CI_VARIABLES:
        if environ.get(name, "").strip().lower() not in _FALSE:
            return name
    return None


def pytest_addoption(parser):
    group = parser.getgroup("golden", "bc-harness: golden checks of quantized models")
    group.addoption("--golden", action="store_true",
                    help="collect the case catalog as tests, one per (case, artifact, backend, golden version)")
    group.addoption("--golden-dir", metavar="DIR",
                    help="golden directory (default: ini golden_dir, [tool.bc-harness] goldens, or serialized/)")
    group.addoption("--golden-fixtures", metavar="DIR", help="case catalog directory for --golden")
    group.addoption("--golden-backend", action="append", metavar="NAME", default=None,
                    help=f"only this backend ({', '.join(ENGINE_ORDER)}); repeatable")
    group.addoption("--golden-layout", choices=("harness", "pytorch"), default="harness",
                    help="with --golden: read --golden-dir in PyTorch's flat layout")
    group.addoption("--golden-update", action="store_true",
                    help="write missing goldens and rewrite changed ones (for the running torch version)")
    group.addoption("--golden-update-new-only", action="store_true", help="write missing goldens only")
    group.addoption("--golden-ci", action="store_true",
                    help="CI mode: never write; update flags are refused (also when a CI variable is set)")
    group.addoption("--golden-prune", action="store_true", help="remove the goldens this session found unused")
    group.addoption("--golden-report", metavar="FILE", help="write one JSON record per golden result")
    group.addoption("--golden-trust-unverified", action="store_true",
                    help="load code-carrying goldens no manifest vouches for (unsafe)")
    group.addoption("--golden-exact", action="store_true",
                    help="float outputs must be bit-exact: a float rounding difference fails as a drift")
    group.addoption("--golden-rounding-ulps", type=int, metavar="N", default=None,
                    help="float rounding bound for every golden, in ulps of each output's largest magnitude "
                         "(default: each case's own tolerance, 16 unless it says otherwise)")
    group.addoption("--golden-shard", metavar="K/N",
                    help="run only shard K of N of the selected tests: catalog items split by (golden version, "
                         "case), balanced by replay-costs.json; every other test is a unit of its own")
    parser.addini("golden_catalog", type="bool", default=False, help="collect the case catalog as with --golden")
    parser.addini("golden_dir", default="", help="golden directory, relative to the rootdir")


SESSION = pytest.StashKey["GoldenSession"]()


@dataclass
class GoldenSession:
    """Everything the plugin knows during a session; kept in ``config.stash``."""

    config: pytest.Config
    ci: str | None
    update: str | None  # None, "all" or "new"
    catalog: bool
    layout: str
    backends: list[str] | None
    report: Path | None
    prune: bool
    trust_unverified: bool
    worker: bool
    shard: tuple[int, int] | None = None  # (K, N) of --golden-shard
    rounding_ulps: int | None = None  # the run's float rounding bound (--golden-exact: 0), else each case's
    results: list[dict] = field(default_factory=list)
    used: set = field(default_factory=set)  # (golden version, case id)
    passed: set = field(default_factory=set)  # nodeids whose call phase passed
    collected: set = field(default_factory=set)  # nodeids collected, selected or not
    collected_files: set = field(default_factory=set)
    catalog_ids: set = field(default_factory=set)
    writes: list = field(default_factory=list)  # lines saying what was written
    wrote: set = field(default_factory=set)  # nodeids that wrote a golden
    unused: list = field(default_factory=list)  # (version, case id, why)
    _runners: dict = field(default_factory=dict, repr=False)
    _cases: list | None = field(default=None, repr=False)
    _known: list | None = field(default=None, repr=False)

    # -- places ---------------------------------------------------------------------
    @property
    def golden_dir(self) -> Path:
        config = self.config
        flag = config.getoption("golden_dir")
        if flag:
            return Path(flag).resolve()
        ini = config.getini("golden_dir")
        if ini:
            return (config.rootpath / ini).resolve()
        from .config import ConfigError, resolve

        try:
            return resolve(cwd=config.rootpath).goldens
        except ConfigError:
            return config.rootpath / "serialized"

    @property
    def fixtures_dir(self) -> Path:
        flag = self.config.getoption("golden_fixtures")
        if flag:
            return Path(flag).resolve()
        from .config import ConfigError, resolve

        try:
            return resolve(cwd=self.config.rootpath).fixtures
        except ConfigError:
            return self.config.rootpath / "fixtures"

    def obtained_dir(self) -> Path:
        """Where obtained outputs of failures go: beside the report, else pytest's cache; never the store."""
        if self.report is not None:
            return self.report.parent / "golden-obtained"
        cache = getattr(self.config, "cache", None)
        if cache is not None:
            return Path(cache.mkdir("golden-obtained"))
        import tempfile

        return Path(tempfile.gettempdir()) / "golden-obtained"

    # -- catalog ----------------------------------------------------------------------
    def cases(self):
        if self._cases is None:
            from .catalog import load_catalog

            self._cases = load_catalog(self.fixtures_dir)
        return self._cases

    def runner(self, version: str):
        """The Replayer of one golden version (of the catalog), opened once per session."""
        if version not in self._runners:
            from .replay import HarnessLayout, Options, PyTorchLayout, Replayer
            from .store import GoldenSet

            options = Options(backends=self.backends, trust_unverified=self.trust_unverified,
                              known=self.known(), rounding_ulps=self.rounding_ulps)
            if self.layout == "pytorch":
                golden = GoldenSet.open(self.golden_dir, version, required=False,
                                        trust_unverified=self.trust_unverified)
                layout = PyTorchLayout(golden)
                cases = [c for c in self.cases() if c.pytorch]
            else:
                golden = GoldenSet.open(self.golden_dir / version, version,
                                        trust_unverified=self.trust_unverified)
                layout, cases = HarnessLayout(golden), self.cases()
            self._runners[version] = Replayer(layout, cases, options)
        return self._runners[version]

    def known(self) -> list:
        """The golden directory's known drifts (empty for PyTorch's layout)."""
        if self.layout != "harness":
            return []
        if self._known is None:  # read once per session, not per check
            from .known import load

            self._known = load(self.golden_dir)
        return self._known

    def forget(self, version: str) -> None:
        """Drop a version's cached state after its goldens were written."""
        self._runners.pop(version, None)

    def record(self, result, nodeid: str) -> None:
        from dataclasses import asdict

        self.results.append({**asdict(result), "test": nodeid})
        self.used.add((result.golden_version, result.case))

    # -- xdist ------------------------------------------------------------------------
    def export(self) -> str:
        import json

        return json.dumps({
            "results": self.results, "used": sorted(self.used), "passed": sorted(self.passed),
            "collected": sorted(self.collected), "collected_files": sorted(self.collected_files),
            "catalog_ids": sorted(self.catalog_ids), "writes": self.writes,
        })

    def merge(self, payload: str) -> None:
        import json

        data = json.loads(payload)
        self.results.extend(data["results"])
        self.used.update(tuple(u) for u in data["used"])
        self.passed.update(data["passed"])
        self.collected.update(data["collected"])
        self.collected_files.update(data["collected_files"])
        self.catalog_ids.update(data["catalog_ids"])
        self.writes.extend(w for w in data["writes"] if w not in self.writes)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "golden(backends=None, min_torch=None): defaults for the golden fixture in this test: "
        "the backends to check and the oldest torch version the test applies to",
    )
    ci = "--golden-ci" if config.getoption("golden_ci") else ci_environment()
    update_all, update_new = config.getoption("golden_update"), config.getoption("golden_update_new_only")
    if update_all and update_new:
        raise pytest.UsageError("--golden-update and --golden-update-new-only exclude each other")
    update = "all" if update_all else "new" if update_new else None
    prune = config.getoption("golden_prune")
    if ci and (update or prune):
        flag = "--golden-update" if update_all else "--golden-update-new-only" if update_new else "--golden-prune"
        raise pytest.UsageError(
            f"{flag} is refused in CI mode ({ci} is set): goldens are never written in CI. "
            "Update them on a developer machine and commit them."
        )
    backends = config.getoption("golden_backend")
    unknown = [b for b in backends or () if b not in ENGINE_ORDER]
    if unknown:
        raise pytest.UsageError(f"--golden-backend {unknown[0]!r} is not one of {', '.join(ENGINE_ORDER)}")
    layout = config.getoption("golden_layout")
    catalog = config.getoption("golden") or config.getini("golden_catalog")
    if layout == "pytorch" and not config.getoption("golden_dir"):
        raise pytest.UsageError("--golden-layout pytorch needs --golden-dir, the directory of PyTorch's files")
    report = config.getoption("golden_report")
    shard = config.getoption("golden_shard")
    if shard:
        from .shard import parse_shard

        try:
            shard = parse_shard(shard)
        except ValueError as exc:
            raise pytest.UsageError(f"--golden-shard: {exc}") from None
    config.stash[SESSION] = GoldenSession(
        config=config, ci=ci, update=update, catalog=bool(catalog), layout=layout,
        backends=list(dict.fromkeys(backends)) if backends else None,
        report=Path(report).resolve() if report else None, prune=prune,
        trust_unverified=config.getoption("golden_trust_unverified"),
        worker=hasattr(config, "workerinput"), shard=shard, rounding_ulps=_rounding_ulps(config, layout),
    )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(), "bc-harness-xdist")
    if shard:
        config.pluginmanager.register(_Sharder(config.stash[SESSION]), "bc-harness-shard")


def _rounding_ulps(config: pytest.Config, layout: str) -> int | None:
    """--golden-exact (a bound of 0) or --golden-rounding-ulps N; None: each case's own bound."""
    exact, ulps = config.getoption("golden_exact"), config.getoption("golden_rounding_ulps")
    if exact and ulps is not None:
        raise pytest.UsageError("--golden-exact and --golden-rounding-ulps conflict: --golden-exact is a bound of 0")
    if ulps is not None and ulps < 0:
        raise pytest.UsageError(f"--golden-rounding-ulps {ulps}: the bound must be 0 or more")
    if (exact or ulps is not None) and layout == "pytorch":
        raise pytest.UsageError("--golden-exact and --golden-rounding-ulps do not apply to --golden-layout pytorch: "
                                "PyTorch's files are judged as its tests judge")
    return 0 if exact else ulps


class _XdistController:
    """On the xdist controller: gather each worker's golden state when it finishes."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        payload = getattr(node, "workeroutput", {}).get("bc_harness")
        if payload:
            node.config.stash[SESSION].merge(payload)


# --- collection -------------------------------------------------------------------------

class GoldenCatalog(pytest.Collector):
    """The case catalog as a collector: one item per (case, artifact, backend, golden version)."""

    def collect(self):
        state: GoldenSession = self.config.stash[SESSION]
        from .compat import torch_release
        from .engines import supported_engines
        from .store import parse_version
        from .store import GoldenStore

        if state.layout == "pytorch":
            versions = ["pytorch"]
            cases = [c for c in state.cases() if c.pytorch]
        else:
            runtime = parse_version(torch_release())
            found, stray = GoldenStore(state.golden_dir).versions()
            versions = [v for v in found if parse_version(v) <= runtime]
            cases = state.cases()
            for name in stray:
                yield StrayGoldenDirectory.from_parent(self, name=f"stray-directory[{name}]",
                                                       directory=state.golden_dir / name)
        state.catalog_ids = {c.id for c in state.cases()}
        backends = state.backends or supported_engines() or list(ENGINE_ORDER)
        for version in versions:
            for case in cases:
                for kind in case.artifacts:
                    for backend in ["any"] if case.engine_agnostic else backends:
                        name = f"{case.id}[{kind}-{backend}-from-{version}]"
                        yield GoldenItem.from_parent(self, name=name, case=case, kind=kind,
                                                     backend=backend, version=version)


class GoldenFailure(Exception):
    """A golden result that failed; its text is the whole failure report."""


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
        from .store import stray_problem

        raise GoldenFailure(stray_problem(self.directory))


class GoldenItem(_GoldenNode):
    def __init__(self, *, case, kind, backend, version, **kwargs):
        super().__init__(**kwargs)
        self.case, self.kind, self.backend, self.version = case, kind, backend, version

    def runtest(self):
        state: GoldenSession = self.config.stash[SESSION]
        evaluation = state.runner(self.version).evaluate(self.case, self.kind, self.backend)
        result = evaluation.result
        if result.verdict in ("missing", "drift") and state.update and state.layout == "harness" \
                and self.version == _runtime() and (result.verdict == "missing" or state.update == "all"):
            _write_catalog_case(state, self.case, rewrite=result.verdict == "drift", nodeid=self.nodeid)
            evaluation = state.runner(self.version).evaluate(self.case, self.kind, self.backend)
            result = evaluation.result
        state.record(result, self.nodeid)
        if result.verdict == "rounding":  # passes; the figures go to the summary and junit-xml
            self.user_properties.append(("golden-rounding", result.message))
        if result.verdict in ("pass", "rounding"):
            return
        if result.known:
            pytest.xfail(f"known {result.verdict}: {result.known} ({result.message})")
        if result.verdict == "skip":
            pytest.skip(result.message)
        hint = ""
        if result.verdict == "missing" and self.version == _runtime():
            hint = (f"\nto create it: regenerate-goldens -k {self.case.id}   "
                    f"(or: pytest --golden --golden-update-new-only -k '{self.case.id}')")
        raise GoldenFailure(_failure_text(state, [evaluation], self.case.tolerance, self.nodeid) + hint)


def _runtime() -> str:
    from .compat import torch_release

    return torch_release()


def _write_catalog_case(state: GoldenSession, case, *, rewrite: bool, nodeid: str) -> None:
    """Generate one catalog case's goldens for the running torch, through the store (locked)."""
    from .generate import generate_case, generation_info
    from .store import GoldenExists, GoldenStore

    store = GoldenStore(state.golden_dir)
    version = _runtime()
    generated = generate_case(case, state.backends)
    change = _change_text(store, version, [generated]) if rewrite else ""
    try:
        store.write(version, {case.id: generated.entry}, generated.files,
                    generation_info(f"pytest {nodeid} --golden-update"), overwrite=rewrite)
        state.writes.append(f"{'rewrote' if rewrite else 'wrote'} {version}/{case.id}" + (f"\n{change}" if change else ""))
        state.wrote.add(nodeid)
    except GoldenExists:
        pass  # another worker wrote it first: replay against that
    state.forget(version)


def _change_text(store, version: str, generated) -> str:
    from .generate import changes_report

    return changes_report(store.open(version), generated)


def _failure_text(state: GoldenSession, evaluations, tolerance, nodeid: str) -> str:
    """Numeric diagnostics of failed evaluations; obtained outputs are saved for inspection."""
    from .notices import quiet
    from .diagnostics import describe

    parts, detailed = [], 0
    for ev in evaluations:
        r = ev.result
        head = f"golden {r.golden_version} · {r.case} · {r.artifact} · {r.backend}: {r.verdict}"
        if r.message:
            head += f" — {r.message}"
        if ev.obtained is None or detailed >= 3:
            parts.append(head)
            continue
        detailed += 1
        with quiet():
            body = describe(ev.golden, ev.obtained, tolerance, ev.targets)
        saved = _save_obtained(state, nodeid, ev)
        parts.append(head + ("\n" + body if body else "") + (f"\nobtained output saved to {saved}" if saved else ""))
    return "\n\n".join(parts)


def _save_obtained(state: GoldenSession, nodeid: str, ev) -> Path | None:
    import re

    from .notices import quiet
    from .safeload import save_bytes
    from .store import atomic_write

    r = ev.result
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    path = state.obtained_dir() / safe / f"{r.golden_version}-{r.case}-{r.artifact}-{r.backend}.pt"
    try:
        with quiet():
            atomic_write(path, save_bytes(ev.obtained))
    except Exception:
        return None
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    state: GoldenSession = config.stash[SESSION]
    if state.catalog:
        from _pytest.reports import CollectReport

        collector = GoldenCatalog.from_parent(session, name="golden-catalog", path=config.rootpath,
                                              nodeid="golden-catalog")
        catalog_items = list(collector.collect())
        # Report them as collected, so the terminal's counts and -k's deselection include them.
        session.ihook.pytest_collectreport(
            report=CollectReport(collector.nodeid, "passed", None, catalog_items))
        items.extend(catalog_items)
    state.collected.update(item.nodeid for item in items)
    state.collected_files.update(item.nodeid.split("::", 1)[0] for item in items)


class _Sharder:
    """--golden-shard K/N: after -k and -m have deselected, keep the items of shard K.

    A catalog item's unit is its (golden version, case), so a case's results stay together; a
    misnamed golden directory is its own unit, and so is every other test (by node id). The
    split is harness.shard.assign: the same items and costs file always give the same shards.
    """

    def __init__(self, state: GoldenSession):
        self.state = state

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        from .shard import Unit, load_costs, pick

        def unit(item):
            if isinstance(item, GoldenItem):
                return Unit(item.version, item.case.id)
            if isinstance(item, StrayGoldenDirectory):
                return Unit(item.directory.name, "*")
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


# --- the fixture ------------------------------------------------------------------------

class GoldenChecker:
    """``golden.check(...)``: replay a test's stored goldens, or write them when asked to."""

    def __init__(self, request):
        self.request = request
        self.state: GoldenSession = request.config.stash[SESSION]

    def check(self, name: str, model, example_inputs, *, artifacts=("state_dict", "scripted", "traced"),
              backends=None, tolerance=None) -> list:
        """Check the quantized ``model`` (a module, or a function building one) against its goldens.

        ``name`` is the golden's stable id: renaming the test or its class does not orphan it.
        Every golden version not newer than the running torch is replayed, under each backend:
        each stored artifact (does the old file still load and give the golden output?) and
        the model as built now (artifact "model": does today's code still give it?).
        Returns the Result records; fails the test on any drift, load error or missing golden.
        """
        from .catalog import Case, GivenInput, Tolerance
        from .compat import torch_release
        from .store import parse_version
        from .store import GoldenStore

        marker = self.request.node.get_closest_marker("golden")
        options = dict(marker.kwargs) if marker else {}
        min_torch = options.get("min_torch")
        if min_torch and parse_version(torch_release()) < parse_version(str(min_torch)):
            pytest.skip(f"golden {name} needs torch >= {min_torch}")
        backends = backends or options.get("backends") or self.state.backends
        unknown = [b for b in backends or () if b not in ENGINE_ORDER]
        if unknown:
            raise ValueError(f"backend {unknown[0]!r} is not one of {', '.join(ENGINE_ORDER)}")
        case = Case(name, build=_builder(model), input=GivenInput(example_inputs), artifacts=tuple(artifacts),
                    tolerance=tolerance or Tolerance(), state_dict_zipfile=True, source=self.request.node.nodeid)
        store = GoldenStore(self.state.golden_dir)
        runtime = torch_release()
        versions = [v for v in store.versions()[0] if parse_version(v) <= parse_version(runtime)]
        evaluations = []
        for version in versions:
            evaluations += self._replay(store, version, case, backends)
        own = [e for e in evaluations if e.result.golden_version == runtime]
        nodeid = self.request.node.nodeid
        if not own:
            if self.state.update:
                self._write(store, case, backends, rewrite=False)
                evaluations += self._replay(store, runtime, case, backends)
            else:
                from .replay import Evaluation
                from .results import Result

                evaluations.append(Evaluation(Result(
                    name, ",".join(artifacts), ",".join(backends or ["all"]), runtime, runtime, "missing",
                    f"no golden {name!r} for torch {runtime}; to create it: "
                    f"pytest '{nodeid}' --golden-update-new-only")))
        elif self.state.update == "all" and any(e.result.verdict == "drift" for e in own):
            self._write(store, case, backends, rewrite=True)
            evaluations = [e for e in evaluations if e.result.golden_version != runtime]
            evaluations += self._replay(store, runtime, case, backends)
        for ev in evaluations:
            self.state.record(ev.result, nodeid)
        failed = [e for e in evaluations if e.result.failed]
        if failed:
            raise GoldenFailure(_failure_text(self.state, failed, case.tolerance, nodeid))
        return [e.result for e in evaluations]

    def _replay(self, store, version, case, backends):
        from .replay import HarnessLayout, Options, Replayer

        golden = store.open(version)
        golden.trust_unverified = self.state.trust_unverified
        if golden.manifest_error or case.id not in golden.cases:
            if golden.manifest_error:
                from .replay import Evaluation
                from .results import Result

                return [Evaluation(Result(case.id, "*", "*", version, _runtime(), "corrupt", golden.manifest_error))]
            return []
        replayer = Replayer(HarnessLayout(golden), [case], Options(backends=backends, known=self.state.known(),
                                                                   rounding_ulps=self.state.rounding_ulps))
        found = [replayer.evaluate(case, kind, backend)
                 for kind in case.artifacts for backend in replayer.backends_for(case)]
        example = case.input.make()
        return found + [replayer.evaluate_model(case, backend, example) for backend in replayer.backends_for(case)]

    def _write(self, store, case, backends, *, rewrite: bool):
        from .generate import generate_case, generation_info

        nodeid = self.request.node.nodeid
        generated = generate_case(case, backends)
        generated.entry["owner"] = nodeid
        change = _change_text(store, _runtime(), [generated]) if rewrite else ""
        store.write(_runtime(), {case.id: generated.entry}, generated.files,
                    generation_info(f"pytest {nodeid} --golden-update"), overwrite=rewrite)
        self.state.writes.append(f"{'rewrote' if rewrite else 'wrote'} {_runtime()}/{case.id} ({nodeid})"
                                 + (f"\n{change}" if change else ""))
        self.state.wrote.add(nodeid)


def _builder(model):
    """A function that builds a fresh copy of the model (state_dict replay needs a new module)."""
    if callable(model) and not hasattr(model, "state_dict"):
        return model
    import copy

    return lambda: copy.deepcopy(model)


@pytest.fixture
def golden(request) -> GoldenChecker:
    """Check a quantized model against stored goldens: ``golden.check(name, model, inputs)``."""
    return GoldenChecker(request)


# --- end of session ---------------------------------------------------------------------

def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None:
        return
    if state.worker:
        config.workeroutput["bc_harness"] = state.export()
        return
    if state.results and state.report is not None:
        import json

        state.report.parent.mkdir(parents=True, exist_ok=True)
        state.report.write_text(json.dumps(state.results, indent=1) + "\n", encoding="utf-8")
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return
    if state.layout == "harness" and (state.results or state.catalog):
        state.unused = _unused(state)
        if state.prune and state.unused:
            from .store import GoldenStore

            store = GoldenStore(state.golden_dir)
            for version in sorted({v for v, _, _ in state.unused}):
                gone = store.remove(version, [c for v, c, _ in state.unused if v == version])
                state.writes.append(f"pruned {len(gone)} unused golden(s) from {version}: {', '.join(gone)}")


def _unused(state: GoldenSession) -> list[tuple[str, str, str]]:
    """Goldens no test used, counting only tests that were selected and passed.

    A golden written by the fixture records its test (owner). It is unused when its owner
    passed without using it, or when its owner's file was collected but the owner no
    longer exists. A catalog golden is unused when its case left the catalog. Goldens of
    deselected, skipped or failed tests are never called unused.
    """
    from .store import GoldenStore

    store = GoldenStore(state.golden_dir)
    found = []
    for version in store.versions()[0]:
        golden = store.open(version)
        if golden.manifest_error:
            continue
        for case_id, entry in golden.cases.items():
            if (version, case_id) in state.used:
                continue
            owner = entry.get("owner")
            if owner:
                if owner in state.passed:
                    found.append((version, case_id, f"{owner} passed without using it"))
                elif owner not in state.collected and owner.split("::", 1)[0] in state.collected_files:
                    found.append((version, case_id, f"{owner} no longer exists"))
            elif state.catalog_ids and case_id not in state.catalog_ids:
                found.append((version, case_id, "the case is no longer in the catalog"))
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None or state.worker or not (state.results or state.writes or state.unused):
        return
    tr = terminalreporter
    tr.section("golden summary")
    if state.results:
        from .results import rounding_summary

        tr.write_line(_counts_table(state.results))
        rounding = rounding_summary(state.results)
        if rounding:
            tr.write_line(rounding)
    for line in state.writes:
        tr.write_line(line)
    if state.unused:
        tr.write_line(f"{len(state.unused)} unused golden(s)" + ("" if state.prune else
                                                                  " (remove them with --golden-prune):"))
        for version, case_id, why in state.unused:
            tr.write_line(f"  {version}/{case_id}: {why}")
    if state.report is not None and state.results:
        tr.write_line(f"golden report: {state.report}")


def _counts_table(results: list[dict]) -> str:
    from collections import Counter

    from tabulate import tabulate

    from .results import VERDICTS

    counts = Counter((r["golden_version"], r["backend"], r["verdict"]) for r in results)
    keys = sorted({(v, b) for v, b, _ in counts})
    present = [v for v in VERDICTS if any(k[2] == v for k in counts)]
    rows = [[v, b, *(counts[(v, b, verdict)] or "" for verdict in present)] for v, b in keys]
    return tabulate(rows, headers=["golden", "backend", *present], tablefmt="simple")
