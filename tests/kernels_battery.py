"""Every reference kernel over fixed inputs, digested: one build's answers in one line per ISA path.

Run as ``python kernels_battery.py PATH_TO_KERNELS_SO``; prints ``<isa> <sha256>`` for each version
of the dot products the CPU can run. Standard library only (no torch), so it also runs under an
emulated CPU. Two builds, or two CPUs, that print the same digest computed the same bits;
tests/test_reference.py holds the default build to torch's kernels, so the digest carries that
exactness to every other build and machine.
"""

from __future__ import annotations

import array
import hashlib
import importlib.machinery
import importlib.util
import random
import sys


def load(path: str):
    loader = importlib.machinery.ExtensionFileLoader("_kernels", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_kernels", loader))
    loader.exec_module(module)
    return module


def _u8(rng, n):
    return array.array("B", [rng.randrange(256) for _ in range(n)])


def _s8(rng, n):
    return array.array("b", [rng.randrange(-128, 128) for _ in range(n)])


def _f32(rng, n, spread=4.0):
    return array.array("f", [rng.uniform(-spread, spread) for _ in range(n)])


def battery(K, digest) -> None:
    """Feed each kernel its inputs and every output's bytes to ``digest``."""
    rng = random.Random(20261125)
    for M, D, N in ((1, 1, 1), (3, 17, 5), (4, 64, 4), (5, 130, 9), (8, 200, 12), (2, 1000, 3), (9, 1030, 37)):
        a, b = _u8(rng, M * D), _s8(rng, N * D)
        zps = array.array("i", [rng.randrange(-4, 5) for _ in range(N)])
        for saturate in (False, True):
            out = array.array("i", [0] * (M * N))
            K.matmul_u8s8(a, b, out, M, D, N, rng.randrange(256), zps, saturate)
            digest.update(out.tobytes())
        quantized = array.array("B", [0] * (M * N))
        K.requantize_float(out, quantized, 0, array.array("f", [rng.uniform(1e-4, 1e-2)]), _f32(rng, N), N, 1,
                           rng.randrange(256), 0, 255, bool(rng.randrange(2)))
        digest.update(quantized.tobytes())
        K.requantize_q31(out, quantized, 0, rng.uniform(1e-4, 0.5), rng.randrange(256), 0, 255)
        digest.update(quantized.tobytes())
        sums = array.array("f", [float(v) for v in out])  # the dynamic linear's float output stage
        fused = array.array("f", [0.0] * (M * N))
        K.fma_columns(sums, fused, array.array("f", [rng.uniform(1e-6, 1e-3) for _ in range(N)]), _f32(rng, N), N, N)
        digest.update(fused.tobytes())
        for saturate in (False, True):  # summed and requantized in one call
            K.linear_u8s8(a, b, quantized, M, D, N, rng.randrange(256), zps, saturate, 2, 0,
                          array.array("f", [rng.uniform(1e-5, 1e-3) for _ in range(N)]), _f32(rng, N, 500.0), N,
                          rng.randrange(256), 0, 255, bool(rng.randrange(2)))
            digest.update(quantized.tobytes())
    x = _f32(rng, 600)
    for dtype, (lo, hi), storage, zps in ((0, (0, 255), "B", [10, 128, 200]), (1, (-128, 127), "b", [0, 3, -2])):
        for divide in (False, True):
            q = array.array(storage, [0] * 600)
            K.quantize(x, q, dtype, array.array("f", [0.03, 0.07, 0.011]), array.array("q", zps), 20, 3, lo, hi, divide)
            back = array.array("f", [0.0] * 600)
            K.dequantize(q, dtype, back, array.array("d", [0.03, 0.07, 0.011]), array.array("q", zps), 20, 3, True)
            digest.update(q.tobytes() + back.tobytes())
    conv = array.array("i", [0] * (2 * 4 * 6 * 6))
    shape = K.conv3d(_u8(rng, 2 * 3 * 8 * 8), _s8(rng, 4 * 3 * 3 * 3), conv, 2, 3, 4, 7, array.array("i", [0, 1, -1, 2]),
                     1, (1, 8, 8), (1, 3, 3), (1, 1, 1), (0, 0, 0), (1, 1, 1), (0, 0, 0), False)
    digest.update(repr(shape).encode() + conv.tobytes())
    halves = array.array("f", [0.0] * 600)
    K.fp16_round(array.array("f", [v * 1000 for v in x]), halves, True)
    digest.update(halves.tobytes())
    for bits, row_bytes in ((8, 16 + 8), (4, 8 + 4)):
        table = array.array("B", [0] * (10 * row_bytes))
        K.rowwise_quantize(_f32(rng, 10 * 16), table, 10, 16, bits)
        bags = array.array("f", [0.0] * (3 * 16))
        K.embedding_bag_rowwise(table, 10, 16, bits, array.array("q", [1, 4, 4, 9, 0, 2]), array.array("q", [0, 2, 5, 6]),
                                3, bags, _f32(rng, 6, 1.0), bool(bits == 4))
        digest.update(table.tobytes() + bags.tobytes())


def main(path: str) -> None:
    K = load(path)
    for isa in K.available_isas():
        K.use_isa(isa)
        digest = hashlib.sha256()
        battery(K, digest)
        print(isa, digest.hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
