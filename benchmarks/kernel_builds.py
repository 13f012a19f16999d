"""What each build of the reference kernels costs: the portable default against -march=native.

Builds kernels/*.cpp twice into a temporary directory, the way setup.py does (default
flags) and with BC_HARNESS_NATIVE_KERNELS's -march=native, then times the reference ops that
dominate a replay (quantized linear and conv, dynamic linear, quantize) with each build and each
version of its dot products this CPU runs. Each (build, version) runs in a process of its own;
each prints its medians and a digest of its outputs, which must all agree (the builds compute
the same bits). Prints a table of medians and each one's ratio to the native build's best.

    python benchmarks/kernel_builds.py [--repeats 15]
    python benchmarks/kernel_builds.py time --so PATH [--isa NAME] [--repeats N]   # one build, as a whole process
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off"]  # setup.py's default


def build(out: Path, native: bool) -> Path:
    so = out / ("_kernels_native.so" if native else "_kernels_default.so")
    subprocess.run(["c++", *FLAGS, *(["-march=native"] if native else []), "-shared", "-fPIC",
                    f"-I{sysconfig.get_paths()['include']}", *map(str, sorted((ROOT / "kernels").glob("*.cpp"))),
                    "-o", str(so)],
                   check=True, capture_output=True)
    return so


def _load(so: str):
    """An extension module from a file, whatever its name (its init function is PyInit__kernels)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("_kernels", so)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_kernels", loader))
    loader.exec_module(module)
    return module


def workloads():
    """(name, function) pairs over fixed random inputs: what a replay's reference does most."""
    import torch

    from harness import reference as R

    g = torch.Generator().manual_seed(0)
    x = torch.quantize_per_tensor(torch.rand(64, 1024, generator=g) * 2 - 1, 0.01, 100, torch.quint8)
    w = torch.quantize_per_tensor(torch.randn(1024, 1024, generator=g) * 0.5, 0.01, 0, torch.qint8)
    bias = torch.randn(1024, generator=g)
    img = torch.quantize_per_tensor(torch.rand(1, 32, 28, 28, generator=g), 0.02, 3, torch.quint8)
    kernel = torch.quantize_per_tensor(torch.randn(32, 32, 3, 3, generator=g) * 0.3, 0.01, 0, torch.qint8)
    xf = torch.randn(64, 1024, generator=g)
    return [
        ("linear 64x1024x1024", lambda: R.linear(x, w, bias, 0.5, 64)),
        ("conv 32->32 3x3 on 28x28", lambda: R.conv_nd(img, kernel, None, 0.25, 10, padding=1)),
        ("dynamic linear 64x1024x1024", lambda: R.dynamic_linear(xf, w, bias)),
        ("quantize 64x1024", lambda: R.quantize(xf, 0.01, 7, torch.quint8)),
    ]


def _digest(value, h) -> None:
    import torch

    if isinstance(value, (tuple, list)):
        for v in value:
            _digest(v, h)
    elif isinstance(value, torch.Tensor):
        t = (value.int_repr() if value.is_quantized else value).contiguous().view(-1)
        h.update(bytes(t.view(torch.uint8).tolist()))


def time_one(so: str, isa: str | None, repeats: int) -> dict:
    """Load the build at ``so`` in place of the installed one and time every workload."""
    from harness.reference import primitives

    primitives._kernels = _load(so)
    if isa:
        primitives._kernels.use_isa(isa)
    h, medians = hashlib.sha256(), {}
    for name, fn in workloads():
        _digest(fn(), h)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    return {"isa": primitives._kernels.isa(), "medians": medians, "digest": h.hexdigest()}


def compare(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        builds = {"default": build(Path(tmp), False), "native": build(Path(tmp), True)}
        runs = []
        for label, so in builds.items():
            isas = json.loads(subprocess.run([sys.executable, __file__, "isas", "--so", str(so)], check=True,
                                             capture_output=True, text=True).stdout)
            for isa in isas:
                out = subprocess.run([sys.executable, __file__, "time", "--so", str(so), "--isa", isa, "--repeats",
                                      str(repeats), "--json"], check=True, capture_output=True, text=True).stdout
                runs.append((label, json.loads(out.splitlines()[-1])))
    names = list(runs[0][1]["medians"])
    best = {n: min(r["medians"][n] for label, r in runs if label == "native") for n in names}
    print(f"medians of {repeats} calls, ms; (x) is the ratio to the native build's best")
    print(f"{'build':<8} {'dot products':<12} " + "  ".join(f"{n:>28}" for n in names))
    for label, r in runs:
        cells = [f"{r['medians'][n] * 1e3:9.3f} ({r['medians'][n] / best[n]:5.2f}x)" for n in names]
        print(f"{label:<8} {r['isa']:<12} " + "  ".join(f"{c:>28}" for c in cells))
    digests = {r["digest"] for _, r in runs}
    print("outputs bit-identical across builds and versions:", len(digests) == 1)
    if len(digests) != 1:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=("compare", "time", "isas"))
    parser.add_argument("--so", help="the built extension to load (time, isas)")
    parser.add_argument("--isa", help="the version of the dot products to run (default: the best this CPU has)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="time: print one JSON line")
    args = parser.parse_args()
    if args.mode == "compare":
        compare(args.repeats)
    elif args.mode == "isas":
        print(json.dumps(_load(args.so).available_isas()))
    else:
        result = time_one(args.so, args.isa, args.repeats)
        print(json.dumps(result) if args.json else
              f"{result['isa']}: " + ", ".join(f"{n} {s * 1e3:.3f} ms" for n, s in result["medians"].items()))


if __name__ == "__main__":
    main()
