"""Replay cost against the bare loop, at 1x, 4x and 16x the catalog; parallel speed-up; memory.

    python benchmarks/replay_scale.py [--runs 3] [--scales 1,4,16] [--version 2.13.0]

The work is the committed golden set of one torch version (default: the running torch's),
every case of the catalog. A scale of S copies every case S times under new ids (cases
``<id>-xK`` in a generated fixtures file, golden files hard-linked under those ids, one
manifest), so S times the work with nothing shared between copies.

Each figure is the median of --runs whole-process runs, alternating the contestants:

* **bare**: a plain loop that loads every artifact and runs its forward on every backend
  that has a golden, through the harness's own loaders (benchmarks/_bare_loop.py): no
  checksums, no expected outputs, no comparison, no reference kernels, no report.
* **replay -j 1** and, at the largest scale, **replay -j 2**: ``bc-harness replay -q``.
* **start-up**: ``python -c 'import torch, harness.cli, harness.replaying.schedule'``, taken off both
  before comparing growth.

Peak memory is ru_maxrss of the child process; with -j 2 that is the largest single process
(the parent or one worker), not their sum. It prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COPIES = '''"""{scale} copies of every case of {fixtures}, under ids <id>-x<k> (benchmarks/replay_scale.py)."""
import dataclasses
from pathlib import Path

from harness.catalog import load_catalog

CASES = [dataclasses.replace(case, id=f"{{case.id}}-x{{k}}")
         for k in range({scale}) for case in load_catalog(Path({fixtures!r}))]
'''


def scaled_workspace(base: Path, version: str, scale: int) -> tuple[Path, Path]:
    """(goldens, fixtures) holding ``scale`` copies of the committed set of ``version``."""
    goldens, fixtures = base / f"x{scale}" / "serialized", base / f"x{scale}" / "fixtures"
    fixtures.mkdir(parents=True)
    (fixtures / "copies.py").write_text(COPIES.format(scale=scale, fixtures=str(REPO / "fixtures")))
    source = REPO / "serialized" / version
    manifest = json.loads((source / "manifest.json").read_text())
    files, cases = {}, {}
    for k in range(scale):
        for case_id, entry in manifest["cases"].items():
            cases[f"{case_id}-x{k}"] = entry
        for name, entry in manifest["files"].items():
            case_id, rest = name.split("/", 1)
            target = goldens / version / f"{case_id}-x{k}" / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source / name, target)
            files[f"{case_id}-x{k}/{rest}"] = entry
    scaled = {**manifest, "cases": cases, "files": files, "golden_files": len(files)}
    (goldens / version / "manifest.json").write_text(json.dumps(scaled))
    return goldens, fixtures


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one whole process."""
    with tempfile.TemporaryFile() as stderr:  # a pipe would fill up and stall the child
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr.read()[-2000:].decode(errors='replace')}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per figure (median)")
    parser.add_argument("--scales", default="1,4,16", help="catalog copies, comma-separated")
    parser.add_argument("--version", help="the committed golden set to replay (default: the running torch's)")
    args = parser.parse_args()
    import torch

    version = args.version or torch.__version__.split("+")[0]
    scales = [int(s) for s in args.scales.split(",")]
    python, harness = str(Path(sys.executable)), str(BIN / "bc-harness")
    print(f"torch {torch.__version__}, golden set {version}, {os.cpu_count()} CPUs, "
          f"medians of {args.runs} whole-process runs", flush=True)

    startup = statistics.median(
        timed([python, "-c", "import torch, harness.cli, harness.replaying.schedule"])[0] for _ in range(args.runs))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        for scale in scales:
            goldens, fixtures = scaled_workspace(Path(tmp), version, scale)
            contestants = {
                "bare": [python, str(REPO / "benchmarks" / "_bare_loop.py"), str(goldens / version), str(fixtures)],
                # cold every time: the result cache would answer a repeated run
                "replay -j 1": [harness, "replay", "-q", "--no-cache", "--no-forward", "-j", "1", "--goldens",
                                str(goldens), "--fixtures", str(fixtures)],
            }
            if scale == max(scales):
                contestants["replay -j 2"] = [a if a != "1" else "2" for a in contestants["replay -j 1"]]
            measured = {name: [] for name in contestants}
            for _ in range(args.runs):
                for name, argv in contestants.items():
                    measured[name].append(timed(argv))
            figures = {name: (statistics.median(w for w, _ in runs), max(m for _, m in runs))
                       for name, runs in measured.items()}
            rows.append((scale, figures))
            print(f"  {scale}x done: " + ", ".join(f"{n} {w:.1f} s" for n, (w, _) in figures.items()), flush=True)

    from tabulate import tabulate

    table = []
    for scale, f in rows:
        bare, rep = f["bare"][0], f["replay -j 1"][0]
        par = f.get("replay -j 2", (None, None))
        table.append([f"{scale}x", f"{bare:.1f}", f"{rep:.1f}", f"{rep / bare:.2f}",
                      f"{par[0]:.1f}" if par[0] else "", f"{rep / par[0]:.2f}" if par[0] else "",
                      f"{f['bare'][1]:.0f}", f"{f['replay -j 1'][1]:.0f}", f"{par[1]:.0f}" if par[1] else ""])
    print()
    print(tabulate(table, headers=["catalog", "bare s", "replay -j1 s", "replay/bare", "replay -j2 s",
                                   "-j1/-j2", "bare MB", "replay MB", "-j2 MB (largest process)"],
                   tablefmt="github"))
    print(f"\ninterpreter start-up (import torch and the harness): {startup:.2f} s")
    first, last = rows[0], rows[-1]
    for name in ("bare", "replay -j 1"):
        growth = (last[1][name][0] - startup) / (first[1][name][0] - startup)
        print(f"{name}: {last[0]}x/{first[0]}x time after start-up = {growth:.2f} (linear: {last[0] / first[0]:.0f}); "
              f"peak memory {last[1][name][1] / first[1][name][1]:.2f}x")
    print("plugin overhead on an unrelated pytest run: python benchmarks/plugin_overhead.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
