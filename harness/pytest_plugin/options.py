"""The plugin's flags and ini options, their checks at configure time, and what counts as CI."""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from pathlib import Path

import pytest

from harness.backends import known
from harness.config import CI_VARIABLES, ci_environment  # noqa: F401 (the plugin's public names)
from harness.goldens.layout import LAYOUTS
from harness.pytest_plugin.session import SESSION, GoldenSession
from harness.replaying.request import PLUGIN, RequestError, RunRequest

def pytest_addoption(parser):
    group = parser.getgroup("golden", "bc-harness: golden checks of quantized models")
    group.addoption("--golden", action="store_true",
                    help="collect the case catalog as tests, one per (case, artifact, backend, golden version)")
    group.addoption("--golden-dir", metavar="DIR",
                    help="golden directory (default: ini golden_dir, [tool.bc-harness] goldens, or serialized/)")
    group.addoption("--golden-fixtures", metavar="DIR", help="case catalog directory for --golden")
    group.addoption("--golden-backend", action="append", metavar="NAME", default=None,
                    help=f"only this backend ({', '.join(known())}); repeatable")
    group.addoption("--golden-layout", choices=tuple(LAYOUTS), default="harness",
                    help="with --golden: read --golden-dir in PyTorch's flat layout")
    group.addoption("--golden-update", action="store_true",
                    help="write missing goldens and rewrite changed ones (for the running torch version)")
    group.addoption("--golden-update-new-only", action="store_true", help="write missing goldens only")
    group.addoption("--golden-ci", action="store_true",
                    help="CI mode: never write; update flags are refused (also when a CI variable is set)")
    group.addoption("--golden-require-current", action="store_true",
                    help="a golden test fails as missing when the running torch has no golden of it, even where "
                         "older torch releases' goldens exist and were replayed")
    group.addoption("--golden-prune", action="store_true", help="remove the goldens this session found unused")
    group.addoption("--golden-report", metavar="FILE", help="write one JSON record per golden result")
    group.addoption("--golden-trust-unverified", action="store_true",
                    help="load code-carrying goldens no manifest vouches for (unsafe)")
    group.addoption("--golden-trust", action="store_true",
                    help="for this run, load goldens that carry code beyond the allowlists (a pickle naming "
                         "other globals, a package with other sources or externs); only for goldens you trust")
    group.addoption("--golden-exact", action="store_true",
                    help="float outputs must be bit-exact: a float rounding difference fails as a drift")
    group.addoption("--golden-rounding-ulps", type=int, metavar="N", default=None,
                    help="float rounding bound for every golden, in ulps of each output's largest magnitude "
                         "(default: each case's own tolerance, 16 unless it says otherwise)")
    group.addoption("--golden-deprecations", choices=("record", "error"), default="record",
                    help="what a deprecation notice raised while a golden.check loads and runs its model does: "
                         "record it (the default: shown in the summary and --golden-report, never failing, even "
                         "under -W error), or error (the check fails, listing them)")
    group.addoption("--golden-shard", metavar="K/N",
                    help="run only shard K of N of the selected tests: catalog items split by (golden version, "
                         "case), balanced by replay-costs.json; every other test is a unit of its own")
    parser.addini("golden_catalog", type="bool", default=False, help="collect the case catalog as with --golden")
    parser.addini("golden_dir", default="", help="golden directory, relative to the rootdir")



#: what torch's import warns where numpy is absent (torch's CPU wheels do not need it, nothing here
#: uses it): noise, kept off a run whatever its -W says, so that a user's `pytest -W error` gets
#: past `import torch` (pytest puts -W's filters before the ini's and harness/__init__.py's)
NUMPY_NOISE = "Failed to initialize NumPy"


@contextlib.contextmanager
def _without_numpy_noise():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NUMPY_NOISE, category=UserWarning)
        yield


# Inside pytest's own warning capture of each phase (its wrappers are tryfirst; these are not, so
# their filter goes first): loading conftests, collecting test modules, running a test.
@pytest.hookimpl(hookwrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    with _without_numpy_noise():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    with _without_numpy_noise():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with _without_numpy_noise():
        yield


def pytest_configure(config: pytest.Config) -> None:
    # torch without numpy warns at import; the harness has no use for numpy (harness/__init__.py)
    config.addinivalue_line("filterwarnings", f"ignore:{NUMPY_NOISE}:UserWarning")
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
    layout = config.getoption("golden_layout")
    request = RunRequest(PLUGIN, layout=layout, backends=config.getoption("golden_backend"),
                         directory=bool(config.getoption("golden_dir")), exact=config.getoption("golden_exact"),
                         rounding_ulps=config.getoption("golden_rounding_ulps"), shard=config.getoption("golden_shard"),
                         trust_unverified=config.getoption("golden_trust_unverified"),
                         trust_goldens=config.getoption("golden_trust"))
    try:
        request = request.check()
    except RequestError as exc:
        raise pytest.UsageError(str(exc)) from None
    catalog = config.getoption("golden") or config.getini("golden_catalog")
    report = config.getoption("golden_report")
    config.stash[SESSION] = GoldenSession(
        config=config, ci=ci, update=update, catalog=bool(catalog), request=request,
        report=Path(report).resolve() if report else None, prune=prune, worker=hasattr(config, "workerinput"),
        require_current=config.getoption("golden_require_current"),
        run_id=getattr(config, "workerinput", {}).get("bc_harness_run") or uuid.uuid4().hex,
    )
    _check_catalog(config.stash[SESSION])
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(), "bc-harness-xdist")
    if request.shard:
        from harness.pytest_plugin.collect import Sharder

        config.pluginmanager.register(Sharder(config.stash[SESSION]), "bc-harness-shard")


def _check_catalog(state: GoldenSession) -> None:
    """--golden needs a case catalog; where there is none, a one-line usage error says what to set."""
    if state.catalog and not state.fixtures_dir.is_dir():
        raise pytest.UsageError(catalog_missing(state.fixtures_dir))


def catalog_missing(where) -> str:
    return (f"--golden collects a case catalog, and there is none at {where}: pass --golden-fixtures=DIR, or "
            "set fixtures in [tool.bc-harness] of pyproject.toml. Tests using the golden fixture need no flag.")


class _XdistController:
    """On the xdist controller: gather each worker's golden state when it finishes, and keep
    each catalog case's items on one worker."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config, log):
        """Under xdist's ``load`` distribution (what ``-n`` gives), catalog items go out a case
        at a time: one worker replays every golden version, artifact and backend of a case, so
        what it builds for the case (skeletons, input, reference) is built once, not on every
        worker. Every other test is its own unit, as under ``load``. Another --dist is kept."""
        if config.getvalue("dist") != "load" or not config.stash[SESSION].catalog:
            return None
        from harness.pytest_plugin.collect import case_scheduling

        return case_scheduling(config, log)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        """A worker works in this run: golden ids are claimed in one place for all of them."""
        node.workerinput["bc_harness_run"] = node.config.stash[SESSION].run_id

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        payload = getattr(node, "workeroutput", {}).get("bc_harness")
        if payload:
            node.config.stash[SESSION].merge(payload)
