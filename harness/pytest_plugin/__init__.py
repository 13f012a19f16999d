"""pytest plugin: the ``golden`` fixture, the catalog as tests, updating, CI mode, xdist.

The entry point pytest loads (``pytest11``). Its rooms: ``options`` (flags, configuration,
CI detection), ``session`` (the session's state, handed over by xdist workers), ``collect``
(the catalog as items, sharding, each item's outcome), ``fixture`` (``golden.check``),
``failures`` (what a failure shows) and ``finish`` (unused goldens, pruning, the summary).

Importing it imports neither torch nor the rest of the harness: they are imported when a
golden test runs, so installing the harness costs unrelated runs nothing.
"""

from harness.pytest_plugin.failures import GoldenFailure
from harness.pytest_plugin.collect import pytest_collection_modifyitems, pytest_ignore_collect, pytest_runtest_makereport
from harness.pytest_plugin.finish import pytest_sessionfinish, pytest_terminal_summary
from harness.pytest_plugin.fixture import GoldenChecker, golden
from harness.pytest_plugin.options import (CI_VARIABLES, ci_environment, pytest_addoption, pytest_collection,
                                           pytest_configure, pytest_load_initial_conftests, pytest_runtest_protocol)
from harness.pytest_plugin.session import SESSION, GoldenSession

__all__ = ["CI_VARIABLES", "SESSION", "GoldenChecker", "GoldenFailure", "GoldenSession", "ci_environment", "golden",
           "pytest_addoption", "pytest_collection", "pytest_collection_modifyitems", "pytest_configure",
           "pytest_ignore_collect", "pytest_load_initial_conftests", "pytest_runtest_protocol",
           "pytest_runtest_makereport",
           "pytest_sessionfinish", "pytest_terminal_summary"]
