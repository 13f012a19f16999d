"""What installing the pytest plugin costs an unrelated pytest run: medians of whole runs.

Runs ``pytest`` on a one-test file in a temporary directory, interleaving runs with and
without the plugin, and prints medians and differences for two set-ups:

* isolated: plugin autoloading off (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1), the harness plugin
  loaded with ``-p harness.pytest_plugin`` or not at all: the plugin's own cost, without
  the noise of other plugins (hypothesis's alone takes most of a second here);
* as installed: every installed plugin autoloaded, with the harness plugin or with
  ``-p no:bc_harness`` (its module never imported).

Bytecode writing is enabled for these runs (this machine sets PYTHONDONTWRITEBYTECODE,
which no installed package would live with), after one warm-up run of each.

    python benchmarks/plugin_overhead.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def compare(label: str, with_args, without_args, env, cwd, runs) -> None:
    for args in (with_args, without_args):
        timed(args, cwd, env)  # warm-up: bytecode and file-system cache
    a_runs, b_runs = [], []
    for _ in range(runs):  # interleaved, so a change of machine load hits both alike
        a_runs.append(timed(with_args, cwd, env))
        b_runs.append(timed(without_args, cwd, env))
    a, b = statistics.median(a_runs), statistics.median(b_runs)
    print(f"{label}: {runs} runs each, interleaved")
    print(f"  with the plugin     median {a * 1000:7.1f} ms")
    print(f"  without the plugin  median {b * 1000:7.1f} ms")
    print(f"  overhead            {1000 * (a - b):+7.1f} ms ({a / b:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "test_trivial.py").write_text("def test_trivial():\n    assert 1 + 1 == 2\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trivial.py"]
        isolated = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        compare("isolated", base + ["-p", "harness.pytest_plugin"], base, isolated, cwd, runs)
        compare("as installed", base, base + ["-p", "no:bc_harness"], env, cwd, runs)
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest, harness.pytest_plugin"],
        capture_output=True, text=True, env=env).stderr.splitlines()
    own = [line for line in probe if line.rstrip().endswith("harness.pytest_plugin")]
    if own:
        print(f"import of harness.pytest_plugin after pytest (cumulative): {int(own[-1].split('|')[1]) / 1000:.1f} ms")


if __name__ == "__main__":
    main()
