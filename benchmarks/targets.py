"""The three speed comparisons of the harness, from one command, as figures (it asserts nothing).

    python benchmarks/targets.py [--runs 3] [--scales 1,4,16] [--no-suite]

1. **PyTorch's layout**: ``bc-harness replay --layout pytorch DIR`` against
   ``benchmarks/_pytorch_logic.py DIR``, a plain script doing what PyTorch's
   TestSerialization does (each file loaded as its test loads it, compared as it compares),
   on the same flat directory: PyTorch's 19 tests, under every engine. The directory is made
   by tests/pytorch_suite_writer.py with the running torch and pinned. Runs alternate.
2. **The main job**: ``bc-harness replay -q --no-cache`` on the committed goldens, cold (wall,
   results, ms per result, peak RSS of the largest process), against the bare loop over the same
   sets (benchmarks/_bare_loop.py: load and run every artifact, nothing else), runs alternating,
   with ``-j 1`` too; a second run with nothing changed (the result cache warm); then the cost per
   result as the store grows: the running torch's golden set at 1x, 4x and 16x
   (benchmarks/replay_scale.py's copies).
3. **The README's test command**: ``pytest -n auto`` once, its wall time and counts
   (``--no-suite`` leaves it out: it takes minutes).

Each figure is the median of --runs whole-process runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))


def timed(argv: list[str], ok=(0,), env=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS of the process in MB, its stdout and stderr) of one whole run."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def alternate(contestants: dict[str, tuple[list[str], tuple]], runs: int) -> dict[str, list]:
    measured: dict[str, list] = {name: [] for name in contestants}
    for _ in range(runs):
        for name, (argv, ok) in contestants.items():
            measured[name].append(timed(argv, ok))
    return measured


def median_wall(runs: list) -> float:
    return statistics.median(r[0] for r in runs)


def results_of(text: str) -> int:
    match = re.search(r"^(?:OK|FAILED): (\d+) results", text, re.M)  # the summary line
    return int(match.group(1)) if match else 0


def pytorch_layout(runs: int, tmp: Path) -> None:
    from tests import pytorch_suite_writer

    directory = pytorch_suite_writer.write(tmp / "pytorch")
    timed([str(BIN / "bc-harness"), "pin", str(directory), "--torch", torch_release()])
    contestants = {
        # exit status 1: qnnpack's dynamic linear differs from the fbgemm golden, for both
        "harness": ([str(BIN / "bc-harness"), "replay", "--layout", "pytorch", str(directory), "-q"], (0, 1)),
        "pytorch logic": ([sys.executable, str(REPO / "benchmarks" / "_pytorch_logic.py"), str(directory),
                           str(REPO / "fixtures")], (0,)),
    }
    measured = alternate(contestants, runs)
    harness, logic = median_wall(measured["harness"]), median_wall(measured["pytorch logic"])
    ratios = [h[0] / p[0] for h, p in zip(measured["harness"], measured["pytorch logic"])]
    print(f"1. PyTorch's layout ({results_of(measured['harness'][0][2])} results; "
          f"{next(line for line in measured['pytorch logic'][0][2].splitlines() if 'test runs' in line)}):")
    print(f"   harness {harness:.2f} s, PyTorch's logic {logic:.2f} s: ratio {harness / logic:.2f} "
          f"(pairs {min(ratios):.2f}-{max(ratios):.2f}; target <= 0.70)", flush=True)


def main_job(runs: int, scales: list[int], tmp: Path) -> None:
    replay = [str(BIN / "bc-harness"), "replay", "-q", "--no-cache"]
    measured = alternate({"main job": (replay, (0,)), "-j 1": ([*replay, "-j", "1"], (0,)),
                          "bare loop": ([sys.executable, str(REPO / "benchmarks" / "_bare_loop.py"),
                                         str(REPO / "serialized"), str(REPO / "fixtures")], (0,))}, runs)
    wall, count = median_wall(measured["main job"]), results_of(measured["main job"][0][2])
    bare, serial = median_wall(measured["bare loop"]), median_wall(measured["-j 1"])
    pairs = lambda name: [m[0] / b[0] for m, b in zip(measured[name], measured["bare loop"])]
    print(f"2. Main job, cold: {wall:.1f} s for {count} results ({1000 * wall / count:.1f} ms a result), peak RSS "
          f"{max(m for _, m, _ in measured['main job']):.0f} MB (largest process); the bare loop "
          f"({next(line for line in measured['bare loop'][0][2].splitlines() if 'artifact runs' in line)}) "
          f"{bare:.1f} s: ratio {wall / bare:.2f} (pairs {min(pairs('main job')):.2f}-{max(pairs('main job')):.2f}); "
          f"-j 1 {serial:.1f} s: ratio {serial / bare:.2f} (pairs {min(pairs('-j 1')):.2f}-{max(pairs('-j 1')):.2f}); "
          f"target <= 1.0", flush=True)
    from harness.config import CI_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}  # a CI run never uses the cache
    env["BC_HARNESS_CACHE_DIR"] = str(tmp / "results-cache")
    timed(replay[:-1], env=env)  # fills the cache
    warm = [timed(replay[:-1], env=env) for _ in range(runs)]
    print(f"   second run, nothing changed: {median_wall(warm):.2f} s "
          f"({results_of(warm[0][2])} results; target <= 5 s)", flush=True)
    from replay_scale import scaled_workspace

    version = torch_release()
    for scale in scales:
        goldens, fixtures = scaled_workspace(tmp / "scaled", version, scale)
        argv = [str(BIN / "bc-harness"), "replay", "-q", "--no-cache", "--no-forward", "--goldens", str(goldens),
                "--fixtures", str(fixtures)]
        runs_at = alternate({"scaled": (argv, (0,))}, runs)["scaled"]
        w, n = median_wall(runs_at), results_of(runs_at[0][2])
        print(f"   golden set {version} x{scale}: {w:.1f} s for {n} results, {1000 * w / n:.2f} ms a result, "
              f"peak RSS {max(m for _, m, _ in runs_at):.0f} MB", flush=True)
        import shutil

        shutil.rmtree(tmp / "scaled" / f"x{scale}")


def suite() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    wall, _, text = timed([str(BIN / "pytest"), "-n", "auto", "-q", "-p", "no:cacheprovider"], env=env)
    tail = [line for line in text.splitlines() if re.search(r"\d+ passed", line)]
    print(f"3. README test command (pytest -n auto): {wall:.0f} s wall ({wall / 60:.1f} min; "
          f"target <= 5 min): {tail[-1].strip('= ') if tail else text[-500:]}", flush=True)


def torch_release() -> str:
    import torch

    return torch.__version__.split("+")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per figure (median)")
    parser.add_argument("--scales", default="1,4,16", help="copies of the golden set, comma-separated")
    parser.add_argument("--no-suite", action="store_true", help="leave out the README's test command")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    print(f"torch {torch_release()}, {os.cpu_count()} CPUs, medians of {args.runs} whole-process runs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bc-targets-") as tmp:
        pytorch_layout(args.runs, Path(tmp))
        main_job(args.runs, [int(s) for s in args.scales.split(",")], Path(tmp))
    if not args.no_suite:
        suite()
    return 0


if __name__ == "__main__":
    sys.exit(main())
