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
    # dequantize() works in float32: each dequantized value is within half a float32 ulp of its
    # exact value, so their difference is within one ulp of the larger (1.9e-6 near 20, not 1e-6)
    largest = max(a.dequantize().abs().max().item(), b.dequantize().abs().max().item(), 1.0)
    assert abs(d.max_abs_diff - real.max().item() * scale) <= 2**-23 * largest * 2


# --- float rounding is told apart from change; quantized outputs get no allowance -----------------

def _moved(values, index, ulps):
    """``values`` with one element moved by ``ulps`` ulps of the tensor's largest magnitude."""
    from harness.compare import ulp_of_largest

    out = values.clone()
    out.view(-1)[index] += ulps * ulp_of_largest(values)
    return out


def test_float_rounding_is_its_own_verdict_with_ulps_and_elements():
    x = torch.tensor([1.5, -0.75, 0.1, 0.0])
    d = compare(x, _moved(x, 2, 3))
    assert d.verdict == "rounding" and not d.ok and d.max_ulp_diff == 3
    assert d.mismatched == 1 and d.total == 4
    assert "1 of 4 elements differ by float rounding, at most 3 ulps of its largest magnitude" in d.message
    assert compare(x, x.clone()).verdict == "pass"


def test_the_rounding_bound_is_configurable_and_zero_is_exact():
    x = torch.tensor([1.5, -0.75, 0.1])
    moved = _moved(x, 0, 20)
    assert compare(x, moved).verdict == "drift"  # beyond the default 16
    assert compare(x, moved, Tolerance(rounding_ulps=32)).verdict == "rounding"
    exact = compare(x, _moved(x, 1, 1), Tolerance(rounding_ulps=0))
    assert exact.verdict == "drift"
    assert "1 ulp of its largest magnitude, beyond the rounding bound of 0" in exact.message


def test_a_change_of_1e4_relative_to_the_largest_magnitude_is_a_drift():
    x = torch.tensor([0.5, -0.25, 0.011])
    d = compare(x, x + torch.tensor([0.0, 0.0, 0.5e-4]))
    assert d.verdict == "drift" and d.max_ulp_diff > 100


def test_equal_infinities_and_nans_are_equal_and_integers_get_no_rounding():
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), 1.0])
    assert compare(x, x.clone()).verdict == "pass"
    assert compare(x, torch.tensor([float("inf"), float("inf"), float("nan"), 1.0])).verdict == "drift"
    i = torch.tensor([3, 4])
    assert compare(i, torch.tensor([3, 5])).verdict == "drift"


def test_a_nested_output_is_as_bad_as_its_worst_part():
    out, h = torch.rand(4, 3), torch.rand(1, 3)
    assert compare((out, h), (_moved(out, 0, 1), h)).verdict == "rounding"
    assert compare((out, h), (_moved(out, 0, 1), h + 1e-3)).verdict == "drift"
    assert compare((q([1.0]), out), (q([1.5]), _moved(out, 0, 1))).verdict == "drift"


_floats = st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=64)


@settings(max_examples=500, deadline=None)
@given(values=_floats, pick=st.integers(0, 63), ulps=st.one_of(st.integers(1, 15), st.integers(18, 100_000)),
       sign=st.sampled_from([-1, 1]))
def test_a_move_of_n_ulps_is_rounding_exactly_when_n_is_within_the_bound(values, pick, ulps, sign):
    # the moved element is itself stored in float32, which can add up to one ulp of the largest
    # magnitude: so the property is tested strictly inside (1-15) and outside (18+) the bound of 16
    x = torch.tensor(values, dtype=torch.float32)
    moved = _moved(x, pick % x.numel(), sign * ulps)
    d = compare(x, moved)
    if ulps > 16:
        assert d.verdict == "drift" and not d.ok and d.max_ulp_diff > 16
    elif torch.equal(x, moved):  # the move vanished in float32 (a tiny element next to the largest)
        assert d.verdict == "pass"
    else:
        assert d.verdict == "rounding" and d.max_ulp_diff <= ulps + 1


@settings(max_examples=300, deadline=None)
@given(ints=st.lists(st.integers(0, 255), min_size=1, max_size=40), pick=st.integers(0, 39),
       scale=st.sampled_from([1e-4, 0.0625, 0.5, 3.0]), zp=st.integers(0, 255), ulps=st.integers(0, 10**6))
def test_one_quantization_step_is_a_drift_whatever_the_rounding_bound(ints, pick, scale, zp, ulps):
    base = torch.tensor(ints, dtype=torch.uint8)
    i = pick % len(ints)
    moved = base.clone()
    moved[i] = base[i] + 1 if base[i] < 255 else base[i] - 1
    a = torch._make_per_tensor_quantized_tensor(base, scale, zp)
    b = torch._make_per_tensor_quantized_tensor(moved, scale, zp)
    d = compare(a, b, Tolerance(rounding_ulps=ulps))
    assert d.verdict == "drift" and d.max_step_diff == 1 and d.mismatched == 1


@settings(max_examples=200, deadline=None)
@given(ints=st.lists(st.integers(0, 255), min_size=1, max_size=40), scale=st.sampled_from([0.0625, 0.5, 0.1]),
       zp=st.integers(1, 254), change=st.sampled_from(["scale", "zero_point"]))
def test_a_changed_qparam_is_a_drift_even_by_one_ulp_or_one_point(ints, scale, zp, change):
    base = torch.tensor(ints, dtype=torch.uint8)
    a = torch._make_per_tensor_quantized_tensor(base, scale, zp)
    if change == "scale":  # the next float32 above the scale: one ulp of a qparam
        other = torch.nextafter(torch.tensor(scale, dtype=torch.float32), torch.tensor(2.0)).item()
        b = torch._make_per_tensor_quantized_tensor(base, other, zp)
    else:
        b = torch._make_per_tensor_quantized_tensor(base, scale, zp + 1)
    d = compare(a, b, Tolerance(rounding_ulps=10**6))
    assert d.verdict == "drift" and "qparams changed" in d.message
