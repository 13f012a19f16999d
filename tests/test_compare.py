"""The comparison policy: qparams exactly, integers in steps, floats with tolerances, sets as sets."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.catalog import Tolerance
from harness.compare import compare, compare_sets, pytorch_verdict


def q(values, scale=0.5, zp=3, dtype=torch.quint8):
    return torch.quantize_per_tensor(torch.tensor(values, dtype=torch.float), scale, zp, dtype)


def test_identical_quantized_tensors_pass():
    d = compare(q([0.0, 1.0, 2.5]), q([0.0, 1.0, 2.5]))
    assert d.ok and d.max_step_diff == 0 and d.mismatched == 0 and d.total == 3


def test_integer_differences_are_counted_in_steps():
    d = compare(q([0.0, 1.0, 2.5, 4.0]), q([0.0, 2.0, 2.5, 3.5]))
    assert not d.ok
    assert d.max_step_diff == 2 and d.mismatched == 2 and d.total == 4
    assert d.max_abs_diff == 1.0
    assert "2 of 4 elements differ, up to 2 steps" in d.message


def test_step_tolerance_is_respected():
    assert compare(q([1.0]), q([1.5]), Tolerance(steps=1)).ok
    assert not compare(q([1.0]), q([2.0]), Tolerance(steps=1)).ok


def test_changed_qparams_fail_even_when_values_agree():
    d = compare(q([1.0, 2.0], scale=0.5, zp=0), q([1.0, 2.0], scale=0.25, zp=0))
    assert not d.ok
    assert "qparams changed" in d.message and "scale 0.5 -> 0.25" in d.message
    assert d.max_step_diff == 0  # measured in the golden's steps


def test_per_channel_qparams_are_compared():
    x = torch.randn(2, 3)
    a = torch.quantize_per_channel(x, torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 0, torch.qint8)
    b = torch.quantize_per_channel(x, torch.tensor([0.1, 0.3]), torch.tensor([0, 0]), 0, torch.qint8)
    assert compare(a, a.clone()).ok
    assert "scales" in compare(a, b).message


def test_dtype_and_shape_and_kind_mismatches_are_reported():
    assert "dtype" in compare(q([1.0]), q([1.0], dtype=torch.qint8, zp=0)).message
    assert "shape" in compare(q([1.0, 2.0]), q([1.0])).message
    assert "quantized tensor" in compare(q([1.0]), torch.tensor([1.0])).message


def test_floats_default_to_exact_and_honour_atol_rtol():
    a = torch.tensor([1.0, 2.0, 3.0])
    b = a + torch.tensor([0.0, 1e-6, 0.0])
    assert not compare(a, b).ok
    assert compare(a, b, Tolerance(atol=1e-5)).ok
    assert compare(a, b, Tolerance(rtol=1e-6)).ok
    assert compare(torch.tensor([float("nan")]), torch.tensor([float("nan")])).ok


def test_nested_outputs_compare_element_by_element():
    out = torch.randn(4, 4, 7)
    h, c = torch.randn(1, 4, 7), torch.randn(1, 4, 7)
    changed = c.clone()
    changed[0, 0, 0] += 1
    assert compare((out, (h, c)), (out, (h, c.clone()))).ok
    d = compare((out, (h, c)), (out, (h, changed)))
    assert d.mismatched == 1 and d.total == out.numel() + h.numel() + c.numel()
    assert d.message.startswith("output[1][1]")
    assert "2 items" in compare((out, h), (out,)).message


def test_sets_show_added_and_removed():
    d = compare_sets({"a", "b"}, {"b", "c"})
    assert not d.ok
    assert "added ['c']" in d.message and "removed ['a']" in d.message
    assert compare_sets({"a"}, {"a"}).ok


def test_pytorch_verdict_follows_assert_equal_and_allclose():
    a = q([1.0, 2.0])
    assert pytorch_verdict(a, q([1.0, 2.0]), "assert_equal") is None
    assert pytorch_verdict(a, q([1.0, 2.5]), "assert_equal") is not None
    # PyTorch compares quantized tensors dequantized: equal values with other qparams pass.
    assert pytorch_verdict(q([1.0], scale=0.5, zp=0), q([1.0], scale=0.25, zp=0), "assert_equal") is None
    x = torch.tensor([1.0])
    assert pytorch_verdict(x, x + 1e-9, "allclose") is None
    assert pytorch_verdict(x, x + 1e-3, "allclose") is not None
    assert pytorch_verdict(x, x + 100, "load_only") is None


@settings(max_examples=200, deadline=None)
@given(
    ints=st.lists(st.integers(0, 255), min_size=1, max_size=40),
    shifts=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    scale=st.sampled_from([0.0625, 0.5, 0.1, 1.0]),
)
def test_step_figures_match_integer_representation(ints, shifts, scale):
    n = min(len(ints), len(shifts))
    base = torch.tensor(ints[:n], dtype=torch.uint8)
    moved = (base.int() + torch.tensor(shifts[:n])).clamp(0, 255).to(torch.uint8)
    a = torch._make_per_tensor_quantized_tensor(base, scale, 10)
    b = torch._make_per_tensor_quantized_tensor(moved, scale, 10)
    d = compare(a, b)
    real = (base.int() - moved.int()).abs()
    assert d.max_step_diff == real.max().item()
    assert d.mismatched == int((real > 0).sum())
    assert d.ok == (d.mismatched == 0)
    # dequantize() works in float32, so the value figure is exact to float32 precision
    assert abs(d.max_abs_diff - real.max().item() * scale) <= 1e-6 * max(1.0, real.max().item())
