"""Isolated environments: running the harness under another torch version, in a cached venv."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


from harness.config import cache_home
from harness.releases import HARNESS_DEPS, INDEX_VARIABLE, installs, pip_args, wrong_torch
from harness.versions import requirement_name

READY = ".bc-harness-ready"


def env_dir(version: str, pin: tuple[str, str] | None = None) -> Path:
    """Where the environment for ``torch==version`` (and a stack library pinned to a release:
    ``pin`` is (package, release), or a label of ``version`` that pins one) lives, cached across
    runs. A pin of the release that pairs with the torch anyway is no pin: one environment each."""
    from harness import stacks
    from harness.releases import pinned

    if pin is None and version != "nightly" and pinned(version):
        version, pin = version.split("+", 1)[0], pinned(version)
    if pin and f"{pin[0]}=={pin[1]}" in stacks.packages(version):
        pin = None
    base = cache_home() / "envs"
    py = ".".join(platform.python_version_tuple()[:2])
    return base / (f"torch-{version}" + (f"-{pin[0]}-{pin[1]}" if pin else "") + f"-py{py}")


def _python(directory: Path) -> Path:
    return directory / "bin" / "python"


def ensure_env(version: str, say: Callable[[str], None] = print, test_runner: bool = False,
               pin: tuple[str, str] | None = None) -> Path:
    """The Python of a venv holding ``torch==version`` from the package registry; made if needed.
    ``pin`` (package, release): that stack library's release in place of the one that pairs with
    the torch (a bisection over the library's releases on one torch).

    The harness itself is not installed there: it runs from this checkout (PYTHONPATH), so
    the goldens of every version are made by the same harness code.
    """
    from harness import stacks

    if pin and f"{pin[0]}=={pin[1]}" in stacks.packages(version):
        pin = None  # the release that pairs with the torch anyway: the torch's own environment
    directory = env_dir(version, pin)
    python = _python(directory)
    packages = pip_args(version, extras=True)  # BC_TORCH_INDEX=cpu: PyTorch's CPU builds, not CUDA ones
    bare = pip_args(version)
    if pin:  # a bisection's environment: the torch and the pinned release, no generation extras
        packages = bare = [p for p in bare if requirement_name(p) != pin[0]] + [f"{pin[0]}=={pin[1]}"]
    if test_runner:  # a project's own golden tests run there (regenerate-goldens on a plugin store)
        packages, bare = packages + ["pytest>=8"], bare + ["pytest>=8"]
    ready = directory / READY
    if ready.is_file() and python.exists() and ready.read_text().splitlines()[1:2] in ([" ".join(packages)],
                                                                                          [" ".join(bare)]):
        say(f"using cached environment {directory}")
        return python
    started = time.perf_counter()
    if not python.exists():
        say(f"creating environment {directory}")
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    source = ("PyTorch's CPU index" if os.environ.get(INDEX_VARIABLE) == "cpu"
              else "the package registry, a release brings CUDA packages: several GB, a few minutes")
    say(f"installing {' '.join(p for p in packages if not p.startswith(('-', 'http')))} (from {source})")
    try:
        _pip(python, packages)
    except subprocess.CalledProcessError:
        if packages == bare:
            raise
        # a generation extra with no build for this Python (torchvision 0.14.1 has none for 3.11): the
        # environment goes on without it, and the cases that need it are recorded as not makeable
        extras = " ".join(p for p in packages if p not in bare)
        say(f"{extras} cannot be installed here; going on without it (its cases are recorded as not makeable)")
        _pip(python, bare)
        packages = bare
    wanted = " ".join(packages)
    found = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    wrong = wrong_torch(version, found)
    if wrong:
        raise RuntimeError(wrong)
    ready.write_text(f"{found}\n{wanted}\n")  # what it holds: a changed pairing installs again
    say(f"environment ready: torch {found} ({time.perf_counter() - started:.0f} s)")
    return python


def _pip(python: Path, packages: list[str]) -> None:
    """pip-install ``packages`` and the harness's own dependencies into ``python``'s environment
    (install-alone packages in a second call: harness.releases.installs)."""
    first, *rest = installs(packages)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *first, *HARNESS_DEPS], check=True)
    for step in rest:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *step], check=True)


def run_harness(python: Path, entry: str, args: list[str], command: str, capture: bool = False):
    """Run a harness entry point (``regenerate_main`` / ``main``) under another environment's Python.

    Output streams through, so its progress shows as it happens, and the exit status is
    returned; with ``capture`` the CompletedProcess is, its output kept. ``command`` is what the
    user typed, recorded in the manifest instead of the inner invocation.
    """
    checkout = Path(__file__).resolve().parents[2]  # the directory that holds the harness package
    # the environment's own scripts first on PATH, as its activation puts them (ExecuTorch 1.3 runs
    # the flatc its wheel installs there)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")])),
           "PATH": os.pathsep.join(filter(None, [str(Path(python).parent), os.environ.get("PATH")])),
           "BC_HARNESS_COMMAND": command}
    code = f"import sys; from harness.cli import {entry}; sys.exit({entry}(sys.argv[1:]))"
    done = subprocess.run([str(python), "-c", code, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=capture, text=capture)
    return done if capture else done.returncode
