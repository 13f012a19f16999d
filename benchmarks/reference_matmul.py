"""Reference u8 x s8 matmul (harness._kernels) versus torch.ops.quantized.linear on fbgemm.

Prints, per (M, K, N), the median time of each over repeated runs in this one process and their
ratio. Both produce int32-accumulated results of the same inputs; the reference's requantization
is included (it is part of what quantized.linear does), and the benchmark first checks that
the two agree bit for bit.

    python benchmarks/reference_matmul.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness import reference as R

SIZES = [(1, 256, 256), (64, 1024, 1024), (256, 1024, 1024)]


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.backends.quantized.engine = "fbgemm"
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine fbgemm, median of {args.repeats}")
    print(f"{'M, K, N':>18}  {'fbgemm ms':>10}  {'reference ms':>12}  {'ratio':>6}  exact")
    for m, k, n in SIZES:
        x = torch.quantize_per_tensor(torch.rand(m, k, generator=g) * 2 - 1, 0.01, 100, torch.quint8)
        w = torch.quantize_per_tensor(torch.randn(n, k, generator=g) * 0.5, 0.01, 0, torch.qint8)
        bias = torch.randn(n, generator=g)
        packed = torch.ops.quantized.linear_prepack(w, bias)
        native = lambda: torch.ops.quantized.linear(x, packed, 0.5, 64)  # noqa: E731
        ours = lambda: R.linear(x, w, bias, 0.5, 64)  # noqa: E731
        exact = torch.equal(native().int_repr(), ours().int_repr())
        t_native, t_ours = median_seconds(native, args.repeats), median_seconds(ours, args.repeats)
        print(f"{str((m, k, n)):>18}  {t_native * 1e3:10.3f}  {t_ours * 1e3:12.3f}  {t_ours / t_native:6.2f}  {exact}")


if __name__ == "__main__":
    main()
