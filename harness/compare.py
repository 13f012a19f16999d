"""Comparison policy: a golden output against a replayed one, in quantization steps and float ulps.

The one definition of "differs". Three outcomes:

- ``pass``: equal. Quantized tensors: same dtype, qscheme and qparams, integer representations
  within the case's ``steps`` (default 0). Float tensors: bit for bit, or within the case's
  ``atol``/``rtol`` where a case declares them (default none).
- ``rounding``: float tensors only. Some elements differ, every one by at most
  ``rounding_ulps`` (default 16) ulps of the golden tensor's largest magnitude, where an ulp of
  x is the float spacing at x (2**-23 * 2**floor(log2 x) for float32). This is what another
  CPU, another kernel dispatch (AVX512, AVX2, the scalar default) or another thread count does
  to a float sum: the same terms added in another order or with fused multiply-adds, each
  rounding once. Shown in every output, never failing a run unless ``--exact`` is asked for.
- ``drift``: anything else, and every quantized difference, however small. Quantized outputs
  get no rounding allowance: a step is a step.

Why this bound. Rounding error of a sum of products scales with the magnitude of the terms,
not with each element's own size, so the bound is set relative to the tensor's largest
magnitude (torch.testing.assert_close's float32 default, rtol 1.3e-6 with atol 1e-5, is
elementwise and its atol would hide a 1e-4-relative change in an output of magnitude 0.01).
Measured on the committed goldens (torch 2.13.0, replayed under ATEN_CPU_CAPABILITY=default,
avx2 and the machine's own AVX512 dispatch, serial and in worker processes): 425 to 461 float
results differed from goldens made on other machines, by at most 4 ulps of the largest
magnitude (3.1e-7 relative, max |Δ| 1.8e-7), most by 1 ulp. 16 ulps leaves four times that
margin and is still 1.9e-6 relative at most: a change of 1e-4 relative to an output's largest
magnitude is about 840 ulps, a drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.catalog import Tolerance
from harness.verdicts import Verdict

@dataclass
class Diff:
    """What differs between a golden and an obtained output, with figures.

    max_step_diff is None where no step is defined (float outputs); max_abs_diff is None
    where the values cannot be lined up at all (different shapes or types). max_ulp_diff is
    the largest float difference in ulps of its tensor's largest magnitude (None where no
    float tensor differed). ``reasons`` say what drifted; ``rounding`` what differs by float
    rounding only.
    """

    max_abs_diff: float | None = 0.0
    max_step_diff: float | None = None
    mismatched: int = 0
    total: int = 0
    reasons: list[str] = field(default_factory=list)
    rounding: list[str] = field(default_factory=list)
    max_ulp_diff: float | None = None

    @property
    def verdict(self) -> str:
        """pass, rounding or drift: the one place a comparison becomes a verdict."""
        if self.reasons:
            return Verdict.DRIFT
        return Verdict.ROUNDING if self.rounding else Verdict.PASS

    @property
    def ok(self) -> bool:
        """Equal within the case's tolerance: no drift and no rounding difference either."""
        return not self.reasons and not self.rounding

    @property
    def message(self) -> str:
        lines = self.reasons or self.rounding
        if not lines:
            return ""
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        return lines[0] + more

    def merge(self, other: "Diff") -> "Diff":
        self.max_abs_diff = _max(self.max_abs_diff, other.max_abs_diff, none_wins=True)
        self.max_step_diff = _max(self.max_step_diff, other.max_step_diff)
        self.max_ulp_diff = _max(self.max_ulp_diff, other.max_ulp_diff)
        self.mismatched += other.mismatched
        self.total += other.total
        self.reasons.extend(other.reasons)
        self.rounding.extend(other.rounding)
        return self


def _max(a, b, none_wins=False):
    if a is None or b is None:
        if none_wins:
            return None
        return b if a is None else a
    return max(a, b)


def compare(golden, obtained, tolerance: Tolerance = Tolerance(), where: str = "output") -> Diff:
    """Compare nested outputs element by element (tensors, tuples, lists, dicts, sets, scalars)."""
    import torch

    if isinstance(golden, torch.Tensor) or isinstance(obtained, torch.Tensor):
        if not (isinstance(golden, torch.Tensor) and isinstance(obtained, torch.Tensor)):
            return _incomparable(golden, where, f"{where}: golden is {_kind(golden)}, obtained {_kind(obtained)}")
        return _compare_tensors(golden, obtained, tolerance, where)
    if isinstance(golden, (tuple, list)) and isinstance(obtained, (tuple, list)):
        if len(golden) != len(obtained):
            return _incomparable(golden, where, f"{where}: golden has {len(golden)} items, obtained {len(obtained)}")
        diff = Diff()
        for i, (g, o) in enumerate(zip(golden, obtained)):
            diff.merge(compare(g, o, tolerance, f"{where}[{i}]"))
        return diff
    if isinstance(golden, dict) and isinstance(obtained, dict):
        if golden.keys() != obtained.keys():
            return _incomparable(golden, where, f"{where}: keys differ")
        diff = Diff()
        for key in golden:
            diff.merge(compare(golden[key], obtained[key], tolerance, f"{where}[{key!r}]"))
        return diff
    if isinstance(golden, (set, frozenset)) and isinstance(obtained, (set, frozenset)):
        return compare_sets(golden, obtained, where)
    if type(golden) is not type(obtained) or golden != obtained:
        return Diff(None, None, 1, 1, [f"{where}: golden {golden!r}, obtained {obtained!r}"])
    return Diff(0.0, None, 0, 1)


def compare_state(golden: dict, obtained: dict, tolerance: Tolerance = Tolerance()) -> Diff:
    """A model's state_dict against the golden's, by name: keys removed and added are named, and
    each entry present in both is compared as ``compare`` compares outputs (dtype, shape, scale,
    zero point and values), so a change that does not reach the output is still seen."""
    removed = [k for k in golden if k not in obtained]
    added = [k for k in obtained if k not in golden]
    diff = Diff()
    if removed or added:
        parts = ([f"removed {', '.join(removed[:4])}" + (" ..." if len(removed) > 4 else "")] if removed else []) + \
                ([f"added {', '.join(added[:4])}" + (" ..." if len(added) > 4 else "")] if added else [])
        diff.merge(_incomparable(golden, "state_dict", "state_dict: " + "; ".join(parts)))
    for key in golden:
        if key in obtained:
            diff.merge(compare(_state_value(golden[key]), _state_value(obtained[key]), tolerance,
                               f"state_dict[{key!r}]"))
    return diff


def _state_value(value):
    """A state_dict entry as compare reads it: a torchbind object (an RNN cell's packed parameters)
    as the tensors its state holds."""
    import torch

    if isinstance(value, torch.ScriptObject) and hasattr(value, "__getstate__"):
        return _state_value(value.__getstate__())
    if isinstance(value, (tuple, list)):
        return type(value)(_state_value(v) for v in value)
    return value


def compare_sets(golden, obtained, where: str = "get_attr targets") -> Diff:
    """Sets compare as sets; the reason names what was added and what was removed."""
    added, removed = sorted(set(obtained) - set(golden)), sorted(set(golden) - set(obtained))
    total = len(set(golden) | set(obtained))
    if not added and not removed:
        return Diff(0.0, None, 0, total)
    parts = [f"added {added}" if added else "", f"removed {removed}" if removed else ""]
    return Diff(None, None, len(added) + len(removed), total, [f"{where}: " + ", ".join(p for p in parts if p)])


def _kind(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a {'quantized ' if value.is_quantized else ''}tensor"
    return type(value).__name__


def _numel(value) -> int:
    import torch

    return value.numel() if isinstance(value, torch.Tensor) else 1


def _incomparable(golden, where: str, reason: str) -> Diff:
    n = _numel(golden)
    return Diff(None, None, n, n, [reason])


def _compare_tensors(golden, obtained, tolerance: Tolerance, where: str) -> Diff:
    if tolerance.dequantized and obtained.is_quantized and golden.is_floating_point():
        golden, obtained = obtained, golden  # a float reference against a quantized output: the same measure
    # a runtime's dequantized output against a quantized golden, where the case says its runtime gives one
    dequantized = tolerance.dequantized and golden.is_quantized and obtained.is_floating_point()
    if golden.is_quantized != obtained.is_quantized and not dequantized:
        return _incomparable(golden, where, f"{where}: golden is {_kind(golden)}, obtained {_kind(obtained)}")
    if golden.shape != obtained.shape:
        return _incomparable(
            golden, where, f"{where}: shape {tuple(golden.shape)} became {tuple(obtained.shape)}"
        )
    if golden.dtype != obtained.dtype and not dequantized:
        return _incomparable(golden, where, f"{where}: dtype {golden.dtype} became {obtained.dtype}")
    if golden.is_quantized:
        return _compare_quantized(golden, obtained, tolerance, where)
    return _compare_float(golden, obtained, tolerance, where)


def qparams(t) -> dict:
    """A quantized tensor's qparams as plain values, for exact comparison and messages."""
    import torch

    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return {"qscheme": str(scheme), "scale": t.q_scale(), "zero_point": t.q_zero_point()}
    return {
        "qscheme": str(scheme),
        "axis": t.q_per_channel_axis(),
        "scales": t.q_per_channel_scales().tolist(),
        "zero_points": t.q_per_channel_zero_points().tolist(),
    }


def _step_sizes(t):
    """The size of one quantization step of each element of ``t`` (broadcastable)."""
    import torch

    if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return torch.tensor(t.q_scale(), dtype=torch.float64)
    shape = [1] * t.dim()
    shape[t.q_per_channel_axis()] = -1
    return t.q_per_channel_scales().to(torch.float64).reshape(shape)


#: a float output against a quantized golden: how far from the golden's value, in its steps, is still
#: the same integer (a runtime computes (q - zero_point) * scale in float32: a few float32 ulps of
#: the value, under 1e-4 of a step for any int8 or uint8 output)
DEQUANTIZED_SLACK = 1e-3


@dataclass
class Elements:
    """Two tensors of one shape and kind, element by element: the one rule of which elements differ.

    ``differs`` is beyond the case's tolerance: for quantized tensors more steps than it allows
    (integer steps when the qparams agree, else |Δ| in the golden's steps; a float tensor against
    a quantized golden, a runtime's dequantized output, in the golden's steps, with
    ``DEQUANTIZED_SLACK`` of a step for the float rounding of dequantizing); for floats, not equal
    and not within atol + rtol * |golden| (a non-finite golden must be matched exactly). Whether a
    float difference is rounding or drift is then decided on the differing elements (Diff).
    """

    delta: object  # obtained - golden, in value (float64)
    abs_diff: object  # |delta|; 0 where both are NaN, inf where one is
    differs: object  # bool mask
    steps: object = None  # |delta| in quantization steps (quantized tensors)
    step_size: object = None  # the golden's step size per element, broadcast (quantized tensors)
    unit: float | None = None  # one ulp of the golden's largest magnitude (float tensors)


def elements(golden, obtained, tolerance: Tolerance = Tolerance()) -> Elements:
    """Where ``obtained`` differs from ``golden`` (same shape, both quantized or both not)."""
    import torch

    if golden.is_quantized:
        g = golden.dequantize().double()
        o = obtained.dequantize().double() if obtained.is_quantized else obtained.double()
        step_size = _step_sizes(golden).expand(golden.shape)
        if obtained.is_quantized and qparams(golden) == qparams(obtained):
            steps = (golden.int_repr().to(torch.int64) - obtained.int_repr().to(torch.int64)).abs().double()
            differs = steps > tolerance.steps
        else:  # integers are not comparable; measure in the golden's steps
            steps = (g - o).abs() / step_size
            differs = steps > tolerance.steps + (1e-9 if obtained.is_quantized else DEQUANTIZED_SLACK)
        return Elements(o - g, (g - o).abs(), differs, steps, step_size)
    g, o = golden.double(), obtained.double()
    same = (g == o) | (torch.isnan(g) & torch.isnan(o))
    abs_diff = torch.where(same, torch.zeros_like(g), (g - o).abs()).nan_to_num(nan=math.inf)
    # a non-finite golden element must be matched exactly (rtol * inf would allow anything)
    differs = ~same & ~(torch.isfinite(g) & (abs_diff <= tolerance.atol + tolerance.rtol * g.abs()))
    return Elements(o - g, abs_diff, differs, unit=ulp_of_largest(golden) if golden.numel() else None)


def _compare_quantized(golden, obtained, tolerance: Tolerance, where: str) -> Diff:
    total = golden.numel()
    el = elements(golden, obtained, tolerance)
    max_abs, max_steps = (el.abs_diff.max().item(), float(el.steps.max())) if total else (0.0, 0.0)
    bad = int(el.differs.sum())
    gq = qparams(golden)
    oq = qparams(obtained) if obtained.is_quantized else gq  # a dequantized output has none to change
    if gq != oq:
        changed = [k for k in gq if gq[k] != oq.get(k)]
        detail = ", ".join(f"{k} {_short(gq[k])} -> {_short(oq.get(k))}" for k in changed)
        return Diff(max_abs, max_steps, bad, total, [f"{where}: qparams changed: {detail}"])
    reasons = [f"{where}: {bad} of {total} elements differ, up to {max_steps:g} steps ({max_abs:.6g} in value)"] \
        if bad else []
    return Diff(max_abs, max_steps, bad, total, reasons)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def ulp_of_largest(t) -> float | None:
    """One ulp of ``t``'s largest finite magnitude in its own dtype (None: not a float tensor)."""
    import torch

    if not t.is_floating_point():
        return None
    info = torch.finfo(t.dtype)
    finite = t[torch.isfinite(t)]
    largest = max(finite.abs().max().item() if finite.numel() else 0.0, info.tiny)
    return info.eps * 2.0 ** math.floor(math.log2(largest))


def _compare_float(golden, obtained, tolerance: Tolerance, where: str) -> Diff:
    total = golden.numel()
    if not total:
        return Diff(0.0, None, 0, 0)
    el = elements(golden, obtained, tolerance)
    bad = int(el.differs.sum())
    max_abs = el.abs_diff.max().item()
    if not bad:
        return Diff(max_abs, None, 0, total)
    unit = el.unit
    worst = el.abs_diff[el.differs].max().item()
    ulps = worst / unit if unit else None
    within = unit is not None and worst <= tolerance.rounding_ulps * unit
    size = f"{ulps_text(ulps)} of its largest magnitude" if ulps is not None else "an integer tensor"
    if within:
        note = f"{where}: {bad} of {total} elements differ by float rounding, at most {size} (max |Δ| {max_abs:.3g})"
        return Diff(max_abs, None, bad, total, rounding=[note], max_ulp_diff=ulps)
    bound = f"beyond the rounding bound of {tolerance.rounding_ulps}" if unit else "exact required"
    reason = f"{where}: {bad} of {total} elements differ, max |Δ| {max_abs:.6g} ({size}, {bound})"
    return Diff(max_abs, None, bad, total, [reason], max_ulp_diff=ulps)


def pytorch_verdict(golden, obtained, mode: str) -> str | None:
    """What PyTorch's own BC test would conclude: None if it passes, else its failure text.

    assert_equal: TestCase.assertEqual with default tolerances (quantized tensors are
    compared dequantized, with float32 tolerances); allclose: torch.allclose defaults.
    """
    import torch

    if mode == "load_only":
        return None
    if mode == "allclose":
        if not torch.allclose(obtained, golden):
            return "torch.allclose(output, expected) is False"
        return None
    from harness.compat_shortcuts import assert_close

    try:
        assert_close(obtained, golden)
    except AssertionError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return "assertEqual failed: " + "; ".join(lines[:3])
    return None


def ulps_text(value: float) -> str:
    """A float difference in ulps, as a person reads it: '1 ulp', '4 ulps', '0.5 ulps'."""
    return f"{value:.3g} {'ulp' if value == 1 else 'ulps'}"
