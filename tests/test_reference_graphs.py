"""The reference on FX graph modules and on PyTorch's reference modules (is_reference=True)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.making import flows
from harness import reference as R
from harness.compare import compare
from harness.backends import using, supported_backends
from harness.notices import quiet
from harness.reference import calls, graphs

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
ENGINES = supported_backends()


def _built(catalog, case_id, backend):
    case = next(c for c in catalog if c.id == case_id)
    with quiet(), using(backend):
        example = flows.make_input(case)
        return case, flows.runnable(case, flows.build(case), example), example


#: quantization-aware training and conversion of these take 20-40 s a backend: the README's tier
#: checks them under one backend, the nightly under every one
_LONG = ("pt2e-qat-conv2d_bn_relu", "pt2e-qat-conv2d_transpose_bn")
_ONE = "x86" if "x86" in ENGINES else ENGINES[0]


@pytest.mark.parametrize("case_id, backend", [
    pytest.param(case_id, backend, marks=[pytest.mark.slow] if case_id in _LONG and backend != _ONE else [])
    for case_id in ["fx-mlp", "fx-conv_bn_linear", "fx-mlp-ref", "fx-conv_bn_linear-ref", "ptq-linear-ref",
                    "ptq-conv2d-ref", "ptq-conv_transpose3d-ref", "linear_relu_package_quantization_transforms",
                    "pt2e-ptq-linear", *_LONG]
    for backend in ENGINES])
def test_graphs_and_reference_modules_match_every_backend_exactly(catalog, case_id, backend):
    """Static FX graphs (native and is_reference=True), eager reference modules, the packaged
    FX model and PT2E programs: quantize, requantize and dequantize are specified, so every
    engine is bit-exact."""
    case, model, example = _built(catalog, case_id, backend)
    with quiet(), using(backend):
        native = case.forward(model, example)
        ours = R.reference_output(model, example)
    diff = compare(ours, native)
    assert diff.mismatched == 0, diff.message


@pytest.mark.parametrize("case_id, pairs", [("fx-mlp-ref", 3), ("pt2e-ptq-linear", 2)])
def test_the_graph_quantizes_and_dequantizes_with_the_reference_kernels(catalog, monkeypatch, case_id, pairs):
    """Not torch's own quantize / dequantize ops, which would make the comparison empty."""
    seen = []
    real_q, real_dq = calls.quantize, calls.dequantize
    monkeypatch.setattr(calls, "quantize", lambda *a, **k: seen.append("q") or real_q(*a, **k))
    monkeypatch.setattr(calls, "dequantize", lambda *a, **k: seen.append("dq") or real_dq(*a, **k))
    backend = "x86" if "x86" in ENGINES else ENGINES[0]
    _, model, example = _built(catalog, case_id, backend)
    assert isinstance(model, torch.fx.GraphModule)
    with quiet(), using(backend):
        R.reference_output(model, example)
    assert seen.count("q") >= pairs and seen.count("dq") >= pairs  # the graph's quantize/dequantize pairs


def test_reference_modules_quantize_their_weight_as_torch_does(catalog):
    from harness.reference.modules import _ref_get_weight

    _, model, _ = _built(catalog, "fx-mlp-ref", "fbgemm")
    found = [m for m in model.modules() if ".reference." in type(m).__module__]
    assert found
    for module in found:
        assert torch.equal(_ref_get_weight(module), module.get_weight())


def test_a_quantized_call_without_a_rule_is_one_line_unsupported():
    class Mul(torch.nn.Module):
        def forward(self, x):
            q = torch.quantize_per_tensor(x, 0.1, 10, torch.quint8)
            return torch.ops.quantized.mul(q, q, 0.2, 5).dequantize()

    graph = torch.fx.symbolic_trace(Mul())
    with pytest.raises(R.Unsupported) as caught:
        R.reference_output(graph, torch.rand(4))
    assert str(caught.value) == "the reference has no rule for quantized::mul"


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("op", ["add", "add_relu"])
@SOME
@given(seed=st.integers(0, 2**31), n=st.integers(1, 200), a_scale=st.floats(1e-3, 0.2), b_scale=st.floats(1e-3, 0.2),
       out_scale=st.floats(1e-3, 0.5), zps=st.tuples(*[st.integers(0, 255)] * 3))
def test_quantized_add_is_within_one_step_on_every_backend(backend, op, seed, n, a_scale, b_scale, out_scale, zps):
    """quantized::add(_relu)'s rule here: dequantize both, add in float32, quantize (torch's
    quantize_per_tensor). No backend is bit-exact to it, by design: ATen's vectorized add
    dequantizes with a premultiplied fused multiply-add and qnnpack adds in fixed point, so
    a sum within rounding of a half step lands one step away. The bound is one step."""
    # qnnpack refuses an add_relu whose output range is empty (zero point 255: [255, 255])
    assume(not (backend == "qnnpack" and op == "add_relu" and zps[2] == 255))
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, generator=g) * 3, torch.randn(n, generator=g) * 3
    with using(backend):
        qa = torch.quantize_per_tensor(a, a_scale, zps[0], torch.quint8)
        qb = torch.quantize_per_tensor(b, b_scale, zps[1], torch.quint8)
        native = getattr(torch.ops.quantized, op)(qa, qb, out_scale, zps[2])
    ours = calls.QUANTIZED_OPS[f"quantized::{op}"](qa, qb, out_scale, zps[2])
    assert (ours.q_scale(), ours.q_zero_point()) == (native.q_scale(), native.q_zero_point())
    assert (ours.int_repr().int() - native.int_repr().int()).abs().max() <= 1


@pytest.mark.parametrize("backend", ENGINES)
@SOME
@given(seed=st.integers(0, 2**31), m=st.integers(1, 8), k=st.integers(1, 32), n=st.integers(1, 8),
       relu=st.booleans())
def test_functional_quantized_linear_matches_the_module_rule(backend, seed, m, k, n, relu):
    """quantized::linear(_relu) with a packed weight, as an FX graph of a packaged model calls it,
    is exactly the reference linear nnq.Linear runs (fbgemm's requantization rule), and within
    one step of every backend's native op."""
    g = torch.Generator().manual_seed(seed)
    x, w, bias = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g) * 0.3, torch.randn(n, generator=g)
    with using(backend):
        qx = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
        qw = torch.quantize_per_tensor(w, 0.01, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, bias)
        native = getattr(torch.ops.quantized, "linear_relu" if relu else "linear")(qx, packed, 0.1, 64)
        ours = calls.QUANTIZED_OPS["quantized::linear_relu" if relu else "quantized::linear"](qx, packed, 0.1, 64)
        direct = R.linear(qx, qw, bias, 0.1, 64, relu=relu)
    assert torch.equal(ours.int_repr(), direct.int_repr())
    assert (ours.int_repr().int() - native.int_repr().int()).abs().max() <= 1
