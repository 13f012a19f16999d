"""The reference kernels (harness._kernels through harness.reference) against each native backend.

Property tests with hypothesis: random shapes, qparams and data. Where a backend is exact by
design the test demands bit-identical integers over at least 500 examples; where it differs by
design, the test names the variant or states the bound it proves.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness import reference as R
from harness.backends import using, supported_backends
from harness.notices import quiet

from .native import native

EXACT = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], derandomize=True)
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _tensor(seed, *shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


qparams = st.tuples(st.floats(1e-3, 0.5), st.integers(0, 255))

#: fbgemm's and x86's u8 x s8 arithmetic on this CPU: int16 pair saturation without AVX512-VNNI
SATURATES = R.fbgemm_saturates_pairs()
HERE = R.Rules(saturate_pairs=SATURATES)


@EXACT
@given(seed=st.integers(0, 2**31), n=st.integers(1, 300), spread=st.floats(0.01, 100), qp=qparams)
def test_quantize_and_dequantize_per_tensor_match_torch_exactly(seed, n, spread, qp):
    scale, zp = qp
    x = _tensor(seed, n, scale=spread)
    q = torch.quantize_per_tensor(x, scale, zp, torch.quint8)
    assert torch.equal(R.quantize(x, [scale], [zp], torch.quint8), q.int_repr())
    assert torch.equal(R.dequantize(q.int_repr(), [scale], [zp], torch.quint8), q.dequantize())


@EXACT
@given(seed=st.integers(0, 2**31), channels=st.integers(1, 8), inner=st.integers(1, 6),
       qdtype=st.sampled_from([torch.qint8, torch.quint8, torch.qint32]))
def test_quantize_per_channel_matches_torch_exactly(seed, channels, inner, qdtype):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, channels, inner, generator=g) * 5
    scales = torch.rand(channels, generator=g).double() * 0.1 + 1e-3
    lo, hi = R.DTYPES[qdtype][2:]
    zps = torch.randint(max(lo, -20), min(hi, 20) + 1, (channels,), generator=g)
    q = torch.quantize_per_channel(x, scales, zps, 1, qdtype)
    assert torch.equal(R.quantize(x, scales, zps, qdtype, axis=1), q.int_repr())
    assert torch.equal(R.dequantize(q.int_repr(), q.q_per_channel_scales(), zps, qdtype, axis=1), q.dequantize())


def _linear_case(seed, m, k, n, per_channel):
    g = torch.Generator().manual_seed(seed)
    x = torch.quantize_per_tensor(torch.rand(m, k, generator=g) * 4 - 1, 0.02,
                                  int(torch.randint(0, 128, (1,), generator=g)), torch.quint8)
    wf = torch.randn(n, k, generator=g)
    if per_channel:
        w = torch.quantize_per_channel(wf, torch.rand(n, generator=g).double() * 0.02 + 1e-3,
                                       torch.zeros(n, dtype=torch.long), 0, torch.qint8)
    else:
        w = torch.quantize_per_tensor(wf, 0.02, 0, torch.qint8)
    return x, w, torch.randn(n, generator=g)


def _native_linear(backend, x, w, bias, scale, zp, relu):
    return native(_native_linear_here, backend, x, w, bias, scale, zp, relu)


def _native_linear_here(backend, x, w, bias, scale, zp, relu):
    with quiet(), using(backend):
        packed = torch.ops.quantized.linear_prepack(w, bias)
        op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
        return op(x, packed, scale, zp).int_repr()


@pytest.mark.parametrize("backend", [b for b in ("fbgemm", "x86") if b in supported_backends()])
@EXACT
@given(seed=st.integers(0, 2**31), m=st.integers(1, 16), k=st.integers(1, 64), n=st.integers(1, 16),
       per_channel=st.booleans(), relu=st.booleans())
def test_linear_is_bit_exact_with_fbgemm_and_x86(backend, seed, m, k, n, per_channel, relu):
    x, w, bias = _linear_case(seed, m, k, n, per_channel)
    ours = R.linear(x, w, bias, 0.05, 64, relu=relu, rules=HERE).int_repr()
    assert torch.equal(ours, _native_linear(backend, x, w, bias, 0.05, 64, relu))


def _valid_geometry(draw, dims, transposed):
    groups = draw(st.integers(1, 2))
    c, o = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pad = tuple(draw(st.integers(0, 1)) for _ in range(dims))
    span = [d * (kk - 1) + 1 for d, kk in zip(dil, k)]
    size = tuple(draw(st.integers(max(1, s - 2 * p), max(1, s - 2 * p) + 4)) for s, p in zip(span, pad))
    outpad = tuple(draw(st.integers(0, max(0, min(s, d) - 1))) for s, d in zip(stride, dil)) if transposed else (0,) * dims
    if transposed:  # a transposed conv's output must not be empty either
        assume(all((n - 1) * s - 2 * p + sp + op > 0 for n, s, p, sp, op in zip(size, stride, pad, span, outpad)))
    return groups, c, o, k, stride, dil, pad, size, outpad


@st.composite
def conv_cases(draw, transposed):
    dims = draw(st.sampled_from([1, 2, 3]))
    return (dims, *_valid_geometry(draw, dims, transposed), draw(st.integers(0, 2**31)))


def _conv_inputs(case, transposed):
    dims, groups, c, o, k, stride, dil, pad, size, outpad, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.quantize_per_tensor(torch.rand(2, c, *size, generator=g) * 4 - 1, 0.02,
                                  int(torch.randint(0, 128, (1,), generator=g)), torch.quint8)
    if SATURATES:
        # Without AVX512-VNNI fbgemm's conv sums products in int16 pairs whose pairing follows its
        # kernel path; the reference's conv has no such variant. Activations of 0..127 (what the
        # reduce_range of fbgemm's qconfigs gives) never saturate: there the sums are exact.
        x = torch._make_per_tensor_quantized_tensor(x.int_repr().clamp(0, 127), x.q_scale(), x.q_zero_point())
    wshape = (c, o // groups, *k) if transposed else (o, c // groups, *k)
    w = torch.quantize_per_tensor(torch.randn(*wshape, generator=g), 0.02, 0, torch.qint8)
    return x, w, torch.randn(o, generator=g)


def _packed_conv(case, w, bias, transposed):
    """(the quantized conv op of ``case``, its weight packed by the current engine)."""
    dims, groups, c, o, k, stride, dil, pad, size, outpad, seed = case
    name = f"conv{'_transpose' if transposed else ''}{dims}d"
    prepack = getattr(torch.ops.quantized, f"{name}_prepack")
    packed = (prepack(w, bias, list(stride), list(pad), list(outpad), list(dil), groups) if transposed
              else prepack(w, bias, list(stride), list(pad), list(dil), groups))
    return getattr(torch.ops.quantized, name), packed


def _native_conv(backend, case, x, w, bias, transposed):
    return native(_native_conv_here, backend, case, x, w, bias, transposed)


def _native_conv_here(backend, case, x, w, bias, transposed):
    with quiet(), using(backend):
        op, packed = _packed_conv(case, w, bias, transposed)
        return op(x, packed, 0.05, 64).int_repr()


@pytest.mark.skipif("fbgemm" not in supported_backends(), reason="this torch has no fbgemm")
@EXACT
@given(case=conv_cases(transposed=False))
def test_conv_1d_2d_3d_is_bit_exact_with_fbgemm(case):
    x, w, bias = _conv_inputs(case, False)
    dims, groups, c, o, k, stride, dil, pad, size, outpad, seed = case
    ours = R.conv_nd(x, w, bias, 0.05, 64, stride, pad, dil, groups).int_repr()
    assert torch.equal(ours, _native_conv("fbgemm", case, x, w, bias, False))


@pytest.mark.skipif("fbgemm" not in supported_backends(), reason="this torch has no fbgemm")
@EXACT
@given(case=conv_cases(transposed=True))
def test_conv_transpose_is_bit_exact_with_fbgemm(case):
    x, w, bias = _conv_inputs(case, True)
    dims, groups, c, o, k, stride, dil, pad, size, outpad, seed = case
    ours = R.conv_nd(x, w, bias, 0.05, 64, stride, pad, dil, groups, transposed=True, output_padding=outpad).int_repr()
    assert torch.equal(ours, _native_conv("fbgemm", case, x, w, bias, True))


@pytest.mark.skipif("qnnpack" not in supported_backends(), reason="this torch has no qnnpack")
@SOME
@given(seed=st.integers(0, 2**31), m=st.integers(1, 16), k=st.integers(1, 64), n=st.integers(1, 16), relu=st.booleans())
def test_qnnpack_linear_matches_the_float_requantization_rule(seed, m, k, n, relu):
    """qnnpack's quantized linear in torch uses a float (fp32) requantization scale, not the Q31
    fixed-point one: it agrees with the fbgemm rule exactly (per-tensor weights)."""
    x, w, bias = _linear_case(seed, m, k, n, per_channel=False)
    assert torch.equal(R.linear(x, w, bias, 0.05, 64, relu=relu).int_repr(),
                       _native_linear("qnnpack", x, w, bias, 0.05, 64, relu))


@SOME
@given(seed=st.integers(0, 2**31), n=st.integers(1, 200), scale=st.floats(2.0**-20, 0.99), zp=st.integers(0, 255))
def test_q31_requantization_is_within_one_step_of_exact_rounding(seed, n, scale, zp):
    """The fixed-point rule differs from float requantization by design; the bound it proves:
    never more than one step from round(acc * scale) computed in float64."""
    acc = torch.randint(-(2**20), 2**20, (1, n), generator=torch.Generator().manual_seed(seed), dtype=torch.int32)
    ours = R.requantize_q31(acc, scale, zp, torch.quint8).to(torch.int64)
    exact = (torch.round(acc.double() * torch.tensor(scale, dtype=torch.float32).double()) + zp).clamp(0, 255)
    assert (ours - exact.to(torch.int64)).abs().max() <= 1


@SOME
@given(seed=st.integers(0, 2**31), m=st.integers(1, 8), k=st.integers(2, 64), n=st.integers(1, 8))
def test_pair_saturation_shows_why_reduce_range_exists(seed, m, k, n):
    """u8 x s8 products summed in int16 pairs saturate only when activations use the full 8 bits:
    with 7-bit activations (reduce_range) the saturating kernel equals the exact one."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
    a7 = torch.randint(0, 128, (m, k), generator=g, dtype=torch.uint8)
    assert torch.equal(R.matmul_u8s8(a7, 3, b, 0, saturate_pairs=True), R.matmul_u8s8(a7, 3, b, 0))
    worst = torch.full((1, 2), 255, dtype=torch.uint8)
    big = torch.full((1, 2), -128, dtype=torch.int8)
    assert R.matmul_u8s8(worst, 0, big, 0, saturate_pairs=True).item() == -32768  # not -65280
    assert R.matmul_u8s8(worst, 0, big, 0).item() == -65280


def _dynamic_case(seed, m, k, n):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 3
    w = torch.quantize_per_tensor(torch.randn(n, k, generator=g), 0.02, 0, torch.qint8)
    return x, w, torch.randn(n, generator=g)


def _native_dynamic(backend, x, w, bias, reduce_range):
    return native(_native_dynamic_here, backend, x, w, bias, reduce_range)


def _native_dynamic_here(backend, x, w, bias, reduce_range):
    with quiet(), using(backend):
        return torch.ops.quantized.linear_dynamic(x, torch.ops.quantized.linear_prepack(w, bias), reduce_range)


@pytest.mark.parametrize("backend", [b for b in ("fbgemm", "x86") if b in supported_backends()])
@EXACT
@given(seed=st.integers(0, 2**31), m=st.integers(1, 12), k=st.integers(1, 48), n=st.integers(1, 12),
       reduce_range=st.booleans())
def test_dynamic_linear_is_exact_with_fbgemm_and_x86(backend, seed, m, k, n, reduce_range):
    x, w, bias = _dynamic_case(seed, m, k, n)
    ours = R.dynamic_linear(x, w, bias, reduce_range, saturate_pairs=SATURATES)
    assert torch.equal(ours, _native_dynamic(backend, x, w, bias, reduce_range))


@pytest.mark.parametrize("backend", [b for b in ("fbgemm", "x86") if b in supported_backends()])
def test_fbgemm_saturates_int16_pairs_exactly_when_the_cpu_lacks_avx512_vnni(backend):
    """Two products of 255 x -128 sum to -65280 in int32 (vpdpbusd, AVX512-VNNI) but saturate to
    -32768 in int16 (vpmaddubsw, AVX2): the native kernel gives the one this CPU predicts."""
    x = torch.full((1, 2), 2.55)  # quantized over [0, 2.55] with 8 bits: scale 0.01, every value 255
    w = torch.quantize_per_tensor(torch.full((1, 2), -1.28), 0.01, 0, torch.qint8)  # -128
    exact, saturated = (R.dynamic_linear(x, w, None, reduce_range=False, saturate_pairs=s) for s in (False, True))
    assert exact.item() == pytest.approx(-65280 * 1e-4, rel=1e-5)
    assert saturated.item() == pytest.approx(-32768 * 1e-4, rel=1e-5)
    native = _native_dynamic(backend, x, w, None, False)
    assert torch.equal(native, saturated if SATURATES else exact), (native, SATURATES)


@pytest.mark.skipif("qnnpack" not in supported_backends(), reason="this torch has no qnnpack")
@SOME
@given(seed=st.integers(0, 2**31), m=st.integers(1, 12), k=st.integers(1, 48), n=st.integers(1, 12))
def test_qnnpack_dynamic_linear_is_the_named_variant_that_ignores_reduce_range(seed, m, k, n):
    """qnnpack quantizes the input to 0..255 even when reduce_range is asked (it warns so) and adds
    the bias after an unfused multiply: the reference's rules="qnnpack" reproduces it exactly."""
    x, w, bias = _dynamic_case(seed, m, k, n)
    native = _native_dynamic("qnnpack", x, w, bias, True)
    assert torch.equal(R.dynamic_linear(x, w, bias, reduce_range=True, rules="qnnpack"), native)


@SOME
@given(seed=st.integers(0, 2**31), spread=st.floats(1e-6, 1e6))
def test_fp16_rounding_matches_torch_half(seed, spread):
    x = _tensor(seed, 257, scale=spread)
    assert torch.equal(R.fp16_round(x), x.half().float())
    assert torch.equal(R.fp16_round(torch.tensor([7e4, -7e4]), saturate=True), torch.tensor([65504.0, -65504.0]))


def test_fp16_dynamic_linear_matches_fbgemm():
    g = torch.Generator().manual_seed(0)
    x, w, bias = torch.randn(3, 7, generator=g), torch.randn(5, 7, generator=g) * 10, torch.randn(5, generator=g)
    with quiet(), using("fbgemm"):
        native = torch.ops.quantized.linear_dynamic_fp16(x, torch.ops.quantized.linear_prepack_fp16(w, bias))
    assert (R.dynamic_linear_fp16(x, w, bias) - native).abs().max() < 1e-5


@SOME
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 12), dim=st.integers(1, 16), bits=st.sampled_from([8, 4]))
def test_rowwise_embedding_bag_matches_torch(seed, rows, dim, bits):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, dim, generator=g)
    if bits == 4 and dim % 2:
        dim += 1
        weight = torch.randn(rows, dim, generator=g)
    prepack = (torch.ops.quantized.embedding_bag_byte_prepack if bits == 8
               else torch.ops.quantized.embedding_bag_4bit_prepack)
    table = prepack(weight)
    assert torch.equal(R.rowwise_quantize(weight, bits), table)
    indices = torch.randint(0, rows, (10,), generator=g)
    offsets = torch.tensor([0, 3, 3, 7])
    op = (torch.ops.quantized.embedding_bag_byte_rowwise_offsets if bits == 8
          else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets)
    native = op(table, indices, offsets, mode=0, pruned_weights=False, include_last_offset=False)
    assert torch.equal(R.embedding_bag_rowwise(table, dim, bits, indices, offsets), native)


def test_observer_qparams_match_torch_observers():
    from harness.compat import ao

    q = ao()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        x = torch.randn(5, 5, generator=g) * 3
        obs = q.MinMaxObserver()
        obs(x)
        scale, zp = obs.calculate_qparams()
        assert R.minmax_observer_qparams(x) == (float(scale), int(zp))
        pc = q.PerChannelMinMaxObserver()
        pc(x)
        scales, zps = pc.calculate_qparams()
        ours = R.per_channel_minmax_qparams(x, axis=0, qdtype=torch.quint8)
        assert torch.equal(ours[0].float(), scales.float()) and torch.equal(ours[1], zps.to(torch.int64))
    batches = [torch.randn(4, 4, generator=g) for _ in range(5)]
    ma = q.MovingAverageMinMaxObserver()
    for b in batches:
        ma(b)
    assert R.moving_average_minmax(batches) == (float(ma.min_val), float(ma.max_val))


BAD_INPUT = {
    "scale zero": lambda: R.quantize(torch.zeros(3), [0.0], [0], torch.quint8),
    "scale nan": lambda: R.quantize(torch.zeros(3), [float("nan")], [0], torch.quint8),
    "zero point out of range": lambda: R.quantize(torch.zeros(3), [0.1], [300], torch.quint8),
    "wrong dtype": lambda: R.quantize(torch.zeros(3, dtype=torch.float64), [0.1], [0], torch.quint8),
    "dequantize storage": lambda: R.dequantize(torch.zeros(3, dtype=torch.int8), [0.1], [0], torch.quint8),
    "per-channel count": lambda: R.quantize(torch.zeros(2, 3), [0.1, 0.2], [0, 0], torch.qint8, axis=1),
    "matmul shapes": lambda: R.matmul_u8s8(torch.zeros(2, 3, dtype=torch.uint8), 0, torch.zeros(4, 5, dtype=torch.int8), 0),
    "matmul dtype": lambda: R.matmul_u8s8(torch.zeros(2, 3, dtype=torch.int8), 0, torch.zeros(4, 3, dtype=torch.int8), 0),
    "requant multiplier": lambda: R.requantize_float(torch.zeros(2, 2, dtype=torch.int32), [-1.0], 0, torch.quint8),
    "q31 scale": lambda: R.requantize_q31(torch.zeros(2, dtype=torch.int32), 1.5, 0, torch.quint8),
    "conv groups": lambda: R.conv(torch.zeros(1, 3, 4, dtype=torch.uint8), 0, torch.zeros(2, 1, 1, dtype=torch.int8), 0,
                                  groups=2),
    "conv empty output": lambda: R.conv(torch.zeros(1, 1, 2, dtype=torch.uint8), 0, torch.zeros(1, 1, 5, dtype=torch.int8), 0),
    "embedding index": lambda: R.embedding_bag_rowwise(torch.zeros(2, 12, dtype=torch.uint8), 4, 8, [5], [0]),
    "embedding offsets": lambda: R.embedding_bag_rowwise(torch.zeros(2, 12, dtype=torch.uint8), 4, 8, [0, 1], [1]),
    "rowwise bits": lambda: R.rowwise_quantize(torch.zeros(2, 4), 3),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_is_a_value_error_before_native_code(name):
    with pytest.raises(ValueError):
        BAD_INPUT[name]()


def test_the_extension_itself_refuses_bad_buffers_without_crashing():
    """Called directly, past the Python checks: wrong sizes are ValueError from the extension."""
    script = """
import torch
from harness import _kernels as K
from harness.reference.primitives import _buffer
calls = [
    lambda: K.quantize(bytearray(8), bytearray(1), 0, bytearray(4), bytearray(8), 1, 1, 0, 255),
    lambda: K.dequantize(bytearray(4), 9, bytearray(16), bytearray(8), bytearray(8), 1, 1, False),
    lambda: K.requantize_float(bytearray(8), bytearray(2), 0, bytearray(4), None, 3, 1, 0, 0, 255, False),
    lambda: K.requantize_q31(bytearray(8), bytearray(2), 0, 2.0, 0, 0, 255),
    lambda: K.matmul_u8s8(bytearray(6), bytearray(5), bytearray(32), 2, 3, 2, 0, bytearray(8), False),
    lambda: K.conv3d(bytearray(4), bytearray(1), bytearray(4), 1, 1, 1, 0, bytearray(4), 1, [1, 1, 4], [1, 1, 9],
                     [1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0], False),
    lambda: K.fp16_round(bytearray(6), bytearray(6), False),
    lambda: K.embedding_bag_rowwise(bytearray(12), 1, 4, 8, bytearray(8), bytearray(8), 1, bytearray(16), None, False),
    lambda: K.rowwise_quantize(bytearray(16), bytearray(3), 1, 4, 8),
]
refused = 0
for call in calls:
    try:
        call()
    except ValueError:
        refused += 1
print(refused, len(calls))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    refused, total = map(int, out.stdout.split())
    assert refused == total


def test_replay_measures_each_result_against_the_reference(generated_store, catalog):
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store
    from harness.goldens.store import GoldenStore

    from .conftest import SLICE

    results = list(replay_store(GoldenStore(generated_store), [c for c in catalog if c.id in SLICE], Options()))
    by = {(r.case, r.artifact, r.backend): r for r in results}
    for backend in ("fbgemm", "x86"):
        for kind in ("state_dict", "scripted", "traced"):
            r = by[("linear", kind, backend)]
            assert r.verdict == "pass" and r.vs_reference_mismatched == 0
    assert by[("lstm", "state_dict", "fbgemm")].vs_reference_mismatched == 0  # the dynamic LSTM, exact
    for kind in ("scripted", "traced"):  # JIT graph mode: the TorchScript file itself, under the dispatch mode
        assert by[("conv2d_graph", kind, "fbgemm")].vs_reference_mismatched == 0
    assert by[("ondevice-linear", "lite", "x86")].vs_reference_mismatched == 0  # the lite file's quantized_forward
    assert by[("per_tensor_observer", "state_dict", "any")].vs_reference_mismatched == 0  # the MinMax rule
    assert by[("default_qat_qconfig", "state_dict", "any")].vs_reference_mismatched is None  # loads only
    for kind in ("state_dict", "scripted", "package"):  # an FX graph of reference modules, every artifact
        assert by[("fx-mlp-ref", kind, "fbgemm")].vs_reference_mismatched == 0
    package = by[("linear_relu_package_quantization_transforms", "package", "fbgemm")]  # the model, from the package
    assert package.verdict == "pass" and package.vs_reference_mismatched == 0


def test_diff_backends_prints_the_matrix_and_says_what_it_cannot_compare():
    from .conftest import run_cli

    out = run_cli("bc-harness", "diff-backends", "-k", "[l]inear", "-k", "[c]onv2d_relu", "-k", "dyn-gru-qint8",
                  "-k", "dyn-embedding-8bit", "-k", "jit-mlp", "-k", "jit-conv_bn-fold", check=0).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("linear ", "conv2d_relu ", "dyn-gru-qint8 ", "dyn-embedding-8bit ", "jit-mlp "))}
    assert rows["linear"][:2] == ["=", "="] and rows["conv2d_relu"][:2] == ["=", "="]
    assert "cases compared with the reference; per backend:" in out
    assert re.search(r"^  fbgemm +\d+ exact, \d+ one step, \d+ rounding, 0 beyond \(of \d+ it runs\)$", out, re.M), out
    assert rows["dyn-gru-qint8"][:2] == ["=", "="]  # the dynamic GRU: exact on fbgemm and x86
    assert rows["dyn-embedding-8bit"] == ["=", "=", "=", "="]  # on the rowwise kernel, exact everywhere
    assert rows["jit-mlp"] == ["=", "=", "=", "="]  # a TorchScript module, under the dispatch mode
    assert "jit-conv_bn-fold: it makes no quantized call: a float model is its own reference" in out


@pytest.mark.skipif("fbgemm" not in supported_backends(), reason="this torch has no fbgemm")
@SOME
@given(seed=st.integers(0, 2**31), steps=st.integers(1, 6), batch=st.integers(1, 3), size=st.integers(1, 5),
       hidden=st.integers(1, 6), layers=st.integers(1, 2), bidirectional=st.booleans())
def test_dynamic_lstm_is_exact_with_fbgemm(seed, steps, batch, size, hidden, layers, bidirectional):
    """quantize_dynamic's LSTM: the input projection over the whole sequence, reduce_range, per-step
    hidden projection; the reference's LSTM reproduces fbgemm bit for bit."""
    from harness.compat import ao

    torch.manual_seed(seed % 2**31)
    float_lstm = torch.nn.LSTM(size, hidden, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(steps, batch, size, generator=torch.Generator().manual_seed(seed))
    with quiet(), using("fbgemm"):
        model = ao().quantize_dynamic(torch.nn.Sequential(float_lstm).eval(), {torch.nn.LSTM})
        native = model(x)
        ours = R.reference_output(model, x)
    assert torch.equal(ours[0], native[0])
    assert torch.equal(ours[1][0], native[1][0]) and torch.equal(ours[1][1], native[1][1])


@pytest.mark.skipif("qnnpack" not in supported_backends(), reason="this torch has no qnnpack")
def test_a_dequantized_output_is_measured_in_steps_of_its_scale(catalog):
    """ptq-linear's output is dequantized: qnnpack's one-step difference (its Q31 requantization)
    reads as ±1 st, not as a bare |Δ|; the README's table says per case what it measured."""
    from harness.making.diffbackends import case_row, markdown

    by_id = {c.id: c for c in catalog}
    cells, why = case_row(by_id["ptq-linear"], ["fbgemm", "qnnpack"])
    assert not why and cells["fbgemm"].grade == "exact"
    assert (cells["qnnpack"].text, cells["qnnpack"].grade) == ("±1 st", "one step")
    table = markdown([by_id["ptq-linear"], by_id["default_qat_qconfig"]], ["fbgemm", "qnnpack"])
    assert "| `ptq-linear` | = | ±1 st |" in table
    assert "| `default_qat_qconfig` | not computable: it checks loading only: no output to compare |  |" in table
    assert "  qnnpack  0 exact, 1 one step, 0 rounding, 0 beyond (of 1 it runs)" in table


@EXACT
@given(seed=st.integers(0, 2**31), m=st.integers(0, 9), k=st.integers(1, 1100), n=st.integers(1, 40),
       per_channel=st.booleans(), relu=st.booleans(), saturate=st.booleans(), bias=st.booleans(),
       isa=st.sampled_from(R.kernels().available_isas()))
def test_the_fused_linear_is_the_matmul_then_the_requantization(seed, m, k, n, per_channel, relu, saturate, bias, isa):
    """linear_u8s8 requantizes each thread's columns as soon as they are summed: the same bytes as
    matmul_u8s8 then requantize_float, on every version of the dot products this CPU runs, with k
    past one block of B (512) and ragged rows and columns."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (m, k), dtype=torch.uint8, generator=g)
    b = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
    b_zps = torch.randint(-5, 6, (n if per_channel else 1,), generator=g)
    multiplier = torch.rand(n if per_channel else 1, generator=g) * 1e-3 + 1e-5
    bias_over = torch.randn(n, generator=g) * 1e3 if bias else None
    before = R.kernels().isa()
    try:
        R.kernels().use_isa(isa)
        fused = R.linear_u8s8(a, 7, b, b_zps, multiplier, 100, bias_over, relu, saturate)
        acc = R.matmul_u8s8(a, 7, b, b_zps, saturate)
    finally:
        R.kernels().use_isa(before)
    assert torch.equal(fused, R.requantize_float(acc, multiplier, 100, torch.quint8, bias_over, relu))
    exact = (a.long() - 7) @ (b.long() - b_zps.long().reshape(-1, 1)).T
    if not saturate:
        assert torch.equal(acc.long(), exact)
