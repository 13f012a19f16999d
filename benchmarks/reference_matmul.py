"""Reference u8 x s8 linear (harness._kernels) versus torch.ops.quantized.linear on fbgemm.

Prints, per (M, K, N), the median time per call of each over repeated runs in this one process
(the two in alternating blocks, so a busy machine slows both alike) and their ratio. Both produce the quantized output
of the same inputs, requantization included, and the benchmark first checks that the two agree bit
for bit. The reference follows fbgemm's rule on this CPU: exact int32 sums with AVX512-VNNI, int16
pair saturation without it (``reference.fbgemm_saturates_pairs``); the activations are full 8-bit, so
the saturation shows where the CPU has it.

    python benchmarks/reference_matmul.py [--repeats 15] [--threads 1,2]

Both run on torch's intra-op thread count (the reference's kernel follows torch.get_num_threads()),
first on one thread, the cleanest comparison of the two kernels, then on the default count.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness import reference as R

SIZES = [(1, 256, 256), (64, 1024, 1024), (256, 1024, 1024)]


def paired_medians(fns, repeats: int, block: int = 5) -> list[float]:
    """Median seconds per call of each function, timed in alternating blocks of ``block`` calls
    (after one warm-up call each) until each has ``repeats`` blocks: a busy machine slows both
    alike. With more than one thread, torch's OpenMP workers spin on their cores for a while after
    each native call, so the first reference calls of a block share the cores with them; the
    one-thread comparison has no such interplay."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seen in zip(fns, times):
            start = time.perf_counter()
            for _ in range(block):
                fn()
            seen.append((time.perf_counter() - start) / block)
    return [statistics.median(seen) for seen in times]


def compare(sizes, rules, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    print(f"{'M, K, N':>18}  {'fbgemm ms':>10}  {'reference ms':>12}  {'ratio':>6}  exact")
    for m, k, n in sizes:
        x = torch.quantize_per_tensor(torch.rand(m, k, generator=g) * 2 - 1, 0.01, 100, torch.quint8)
        w = torch.quantize_per_tensor(torch.randn(n, k, generator=g) * 0.5, 0.01, 0, torch.qint8)
        bias = torch.randn(n, generator=g)
        packed = torch.ops.quantized.linear_prepack(w, bias)
        native = lambda: torch.ops.quantized.linear(x, packed, 0.5, 64)  # noqa: E731
        ours = lambda: R.linear(x, w, bias, 0.5, 64, rules=rules)  # noqa: E731
        exact = torch.equal(native().int_repr(), ours().int_repr())
        t_native, t_ours = paired_medians([native, ours], repeats)
        print(f"{str((m, k, n)):>18}  {t_native * 1e3:10.3f}  {t_ours * 1e3:12.3f}  {t_ours / t_native:6.2f}  {exact}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                        help="thread counts to compare at (torch's intra-op setting, which the reference follows)")
    args = parser.parse_args()
    torch.backends.quantized.engine = "fbgemm"
    rules = R.Rules(saturate_pairs=R.fbgemm_saturates_pairs())
    print(f"torch {torch.__version__}, engine fbgemm, reference kernels {R.kernels().isa()}, fbgemm's sums here: "
          f"{'int16 pairs, saturating' if rules.saturate_pairs else 'exact'}; median of {args.repeats} blocks")
    for threads in dict.fromkeys(int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        print(f"\n{threads} thread{'s' if threads > 1 else ''} (torch.set_num_threads) for both:")
        compare(SIZES, rules, args.repeats)


if __name__ == "__main__":
    main()
