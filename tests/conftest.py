"""Shared fixtures: the real catalog, a golden store generated once per session, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
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


def run_cli(program: str, *args, cwd=None, check=None, env=None, process=False) -> subprocess.CompletedProcess:
    """Run a console script's entry point as a user would, and what it printed and returned.

    In this process (torch is imported once per session, the workers' fork server started once),
    with ``env`` (changes to the environment, a value of None removing the variable) in place while
    it runs; ``process`` True runs the installed script in a real subprocess instead, where the
    process boundary is what a test checks (what torch or the workers' fork server read at their
    start-up, a worker's own output, modules the test session has loaded)."""
    changes = env or {}
    if process:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k not in changes}
        env.update({k: v for k, v in changes.items() if v is not None})
        proc = subprocess.run([str(BIN / program), *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or REPO, env=env, stdin=subprocess.DEVNULL, timeout=600)
    else:
        with _environment(changes):
            proc = _in_process(program, [str(a) for a in args], Path(cwd or REPO))
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@contextlib.contextmanager
def _environment(changes: dict):
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for name, value in changes.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def _in_process(program: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The entry point of ``program`` called here, in ``cwd``: its exit status, and what it wrote
    (Python's streams, then what native code wrote to the file descriptors), as a subprocess's."""
    from harness.cli import main, regenerate_main

    entry = {"bc-harness": main, "regenerate-goldens": regenerate_main}[program]
    texts = {1: io.StringIO(), 2: io.StringIO()}
    with tempfile.TemporaryFile() as native_out, tempfile.TemporaryFile() as native_err:
        sys.stdout.flush(), sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        os.dup2(native_out.fileno(), 1), os.dup2(native_err.fileno(), 2)
        here, arguments = os.getcwd(), sys.argv
        try:
            os.chdir(cwd)
            sys.argv = [program, *argv]  # a manifest records the command that made it
            with contextlib.redirect_stdout(texts[1]), contextlib.redirect_stderr(texts[2]), warnings.catch_warnings():
                try:
                    code = entry(argv)
                except SystemExit as exc:  # argparse's usage errors
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                except BaseException:  # what a user would see: a traceback, exit 1
                    traceback.print_exc()
                    code = 1
        finally:
            os.chdir(here)
            sys.argv = arguments
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        outputs = []
        for fd, native in ((1, native_out), (2, native_err)):
            native.seek(0)
            outputs.append(texts[fd].getvalue() + native.read().decode("utf-8", "replace"))
    return subprocess.CompletedProcess([program, *argv], code, *outputs)


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
