"""Shared fixtures: the real catalog, a golden store generated once per session, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
BIN = Path(sys.executable).parent


def _import_what_pytester_sessions_use() -> None:
    """pytester runs its sessions in this process, and removes every module a session imported
    when it ends. torch cannot be imported twice in one process, and modules imported afresh
    by every session would cost it their import: so torch, every harness module and the case
    catalog are imported here, once per process, before any session."""
    import importlib
    import pkgutil

    import torch  # noqa: F401

    import harness
    from harness.catalog import load_catalog

    for module in pkgutil.walk_packages(harness.__path__, "harness."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    load_catalog(FIXTURES)


_import_what_pytester_sessions_use()

#: A small slice of the catalog that still covers every flow and artifact kind.
SLICE = ["linear", "linear_dynamic-qint8", "linear_dynamic-float16", "conv2d_graph", "lstm",
         "per_tensor_observer", "default_qat_qconfig", "linear_relu_package_quantization_transforms",
         "qat-linear_relu", "fx-mlp-ref", "jit-mlp-dynamic", "ondevice-linear", "pt2e-ptq-linear"]


@pytest.fixture(scope="session", autouse=True)
def results_cache(tmp_path_factory):
    """The command's result cache (harness.replaying.cache) of this session, never the user's own."""
    os.environ["BC_HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("results-cache"))


@pytest.fixture(scope="session")
def catalog():
    from harness.catalog import load_catalog

    return load_catalog(FIXTURES)


@pytest.fixture(scope="session")
def generated_store(tmp_path_factory, catalog):
    """Goldens for SLICE, generated once in-process with the installed torch."""
    from harness.compat import torch_release
    from harness.making.generate import generate_case, generation_info
    from harness.goldens.store import GoldenStore

    root = tmp_path_factory.mktemp("store") / "serialized"
    by_id = {c.id: c for c in catalog}
    made = [generate_case(by_id[i]) for i in SLICE]
    GoldenStore(root).write(
        torch_release(), {g.case.id: g.entry for g in made},
        {n: d for g in made for n, d in g.files.items()}, generation_info("tests"),
    )
    return root


@pytest.fixture
def store(generated_store, tmp_path):
    """A private copy of the generated store, free to damage."""
    target = tmp_path / "serialized"
    shutil.copytree(generated_store, target)
    return target


@pytest.fixture(scope="session")
def version():
    from harness.compat import torch_release

    return torch_release()


@pytest.fixture
def outside_ci(monkeypatch):
    """A plugin session that writes or prunes must run outside CI mode; CI sets CI=true for the
    whole suite, so such a test clears every CI variable the plugin reads, for itself only."""
    from harness.pytest_plugin import CI_VARIABLES

    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run_cli(program: str, *args, cwd=None, check=None, env=None) -> subprocess.CompletedProcess:
    """Run an installed console script in a real subprocess, as a user would (``env``: changes to
    the environment, a value of None removing the variable)."""
    changes = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    proc = subprocess.run([str(BIN / program), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, stdin=subprocess.DEVNULL, timeout=600)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def records(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())


def by_key(recs: list[dict]) -> dict[tuple, dict]:
    return {(r["case"], r["artifact"], r["backend"]): r for r in recs}


@pytest.fixture(scope="session", autouse=True)
def torch_warmed(generated_store, catalog):
    """Run every flow once (generate, then replay) before any test.

    pytester snapshots sys.modules when a test starts and restores it at teardown; a torch
    submodule first imported inside such a test would be dropped and, imported again later,
    would register its operators twice (torch refuses). Warming imports them all up front.
    """
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store
    from harness.goldens.store import GoldenStore

    by_id = {c.id: c for c in catalog}
    list(replay_store(GoldenStore(generated_store), [by_id[i] for i in SLICE], Options()))
