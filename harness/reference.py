"""Reference quantized arithmetic: checked Python entry points to harness._kernels, and the
reference ops composed from them.

Every function checks shapes, dtypes and qparams here and raises ValueError before any native
code runs; tensors cross into the extension as buffers over their own memory (ctypes arrays
at ``data_ptr()``), so nothing is copied and the extension never sees a torch object.

Variants name the backend rule they reproduce: ``requant="float"`` is fbgemm/x86's
(float multiplier, float bias divided by input_scale * weight_scale), ``requant="q31"`` is
qnnpack's fixed-point multiplier; ``saturate_pairs=True`` reproduces AVX2 vpmaddubsw's int16
pair saturation.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import torch

try:
    from . import _kernels
except ImportError as exc:  # pragma: no cover - a checkout used without `pip install -e .`
    _kernels = None
    _IMPORT_ERROR = exc

#: quantized dtype -> (kernel code, storage dtype, qmin, qmax)
DTYPES = {
    torch.quint8: (0, torch.uint8, 0, 255),
    torch.qint8: (1, torch.int8, -128, 127),
    torch.qint32: (2, torch.int32, -(2**31), 2**31 - 1),
}


def kernels():
    if _kernels is None:
        raise ImportError(f"harness._kernels is not built (pip install -e . builds it): {_IMPORT_ERROR}")
    return _kernels


def _buffer(t: torch.Tensor):
    """A writable buffer over a contiguous CPU tensor's memory (the caller keeps ``t`` alive)."""
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("reference kernels take contiguous CPU tensors")
    return (ctypes.c_char * (t.numel() * t.element_size())).from_address(t.data_ptr()) if t.numel() else bytearray()


# --- checks ------------------------------------------------------------------------------

def _check_dtype(qdtype):
    if qdtype not in DTYPES:
        raise ValueError(f"quantized dtype must be one of quint8, qint8, qint32, not {qdtype}")
    return DTYPES[qdtype]


def _check_qparams(scales: torch.Tensor, zero_points: torch.Tensor, qdtype) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, qmin, qmax = _check_dtype(qdtype)
    scales = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
    zero_points = torch.as_tensor(zero_points).reshape(-1)
    if zero_points.is_floating_point():
        if not torch.equal(zero_points, zero_points.round()):
            raise ValueError("zero points must be integers")
    zero_points = zero_points.to(torch.int64)
    if scales.numel() != zero_points.numel() or scales.numel() == 0:
        raise ValueError(f"{scales.numel()} scales but {zero_points.numel()} zero points")
    if not torch.isfinite(scales).all() or (scales <= 0).any():
        raise ValueError(f"scales must be finite and > 0, got {scales.tolist()[:4]}")
    if (zero_points < qmin).any() or (zero_points > qmax).any():
        raise ValueError(f"zero points must lie in [{qmin}, {qmax}] for {qdtype}")
    return scales.to(torch.float32).contiguous(), zero_points.contiguous()


def _layout(shape, axis, channels):
    """(inner, channels) of a per-channel layout along ``axis`` (per tensor: channels 1)."""
    if axis is None:
        if channels != 1:
            raise ValueError("per-tensor quantization takes one scale and one zero point")
        return 1, 1
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} out of range for shape {tuple(shape)}")
    axis %= len(shape)
    if shape[axis] != channels:
        raise ValueError(f"axis {axis} has {shape[axis]} channels but {channels} scales were given")
    return math.prod(shape[axis + 1:]) or 1, channels


# --- primitives --------------------------------------------------------------------------

def quantize(x: torch.Tensor, scales, zero_points, qdtype, axis: int | None = None, *, qrange=None,
             divide: bool = False) -> torch.Tensor:
    """Integer representation of ``x`` quantized per tensor (axis None) or per channel.

    Rule: float32 multiply by the inverse scale (torch's quantize_per_tensor / _channel); with
    ``divide``, x / scale in double (fbgemm's dynamic linear input). ``qrange`` narrows the
    saturation bounds (reduce_range's 0..127)."""
    if x.dtype != torch.float32:
        raise ValueError(f"quantize takes float32, not {x.dtype}")
    code, storage, qmin, qmax = _check_dtype(qdtype)
    if qrange is not None:
        if not qmin <= qrange[0] <= qrange[1] <= qmax:
            raise ValueError(f"qrange {qrange} lies outside [{qmin}, {qmax}]")
        qmin, qmax = qrange
    scales, zero_points = _check_qparams(scales, zero_points, qdtype)
    inner, channels = _layout(x.shape, axis, scales.numel())
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=storage)
    if x.numel():
        kernels().quantize(_buffer(x), _buffer(out), code, _buffer(scales), _buffer(zero_points), inner, channels,
                           qmin, qmax, divide)
    return out


def dequantize(q: torch.Tensor, scales, zero_points, qdtype, axis: int | None = None) -> torch.Tensor:
    """Float values of integer representations: per tensor in float32 arithmetic, per channel in
    float64 (as torch computes each)."""
    code, storage, _, _ = _check_dtype(qdtype)
    scales_in = scales
    if q.dtype != storage:
        raise ValueError(f"{qdtype} values are stored as {storage}, not {q.dtype}")
    scales, zero_points = _check_qparams(scales, zero_points, qdtype)
    scales = torch.as_tensor(scales_in, dtype=torch.float64).reshape(-1).contiguous()
    inner, channels = _layout(q.shape, axis, scales.numel())
    q = q.contiguous()
    out = torch.empty(q.shape, dtype=torch.float32)
    if q.numel():
        kernels().dequantize(_buffer(q), code, _buffer(out), _buffer(scales), _buffer(zero_points), inner, channels,
                             axis is not None)
    return out


def requantize_float(acc: torch.Tensor, multiplier, zero_point: int, qdtype, bias_over_scale=None,
                     relu: bool = False) -> torch.Tensor:
    """fbgemm/x86: out = zp + lrintf((acc + bias_over_scale[j]) * multiplier[j]), saturated."""
    code, storage, qmin, qmax = _check_dtype(qdtype)
    acc = _int32_matrix(acc, "acc")
    cols = acc.shape[-1]
    multiplier = torch.as_tensor(multiplier, dtype=torch.float32).reshape(-1).contiguous()
    if multiplier.numel() not in (1, cols) or not torch.isfinite(multiplier).all() or (multiplier <= 0).any():
        raise ValueError("multiplier: one or one per column, finite and > 0")
    _check_zero_point(zero_point, qmin, qmax)
    bias = None
    if bias_over_scale is not None:
        bias = torch.as_tensor(bias_over_scale, dtype=torch.float32).reshape(-1).contiguous()
        if bias.numel() != cols:
            raise ValueError(f"bias_over_scale has {bias.numel()} values for {cols} columns")
    out = torch.empty(acc.shape, dtype=storage)
    if acc.numel():
        kernels().requantize_float(_buffer(acc), _buffer(out), code, _buffer(multiplier),
                                   None if bias is None else _buffer(bias), cols, multiplier.numel(), int(zero_point),
                                   qmin, qmax, relu)
    return out


def requantize_q31(acc: torch.Tensor, scale: float, zero_point: int, qdtype) -> torch.Tensor:
    """qnnpack's fixed-point requantization (Q31 multiplier and rounding shift)."""
    code, storage, qmin, qmax = _check_dtype(qdtype)
    acc = _int32_matrix(acc, "acc")
    scale = float(scale)
    if not (2.0**-32 <= scale < 1.0):
        raise ValueError(f"q31 requantization needs a scale in [2**-32, 1), got {scale}")
    _check_zero_point(zero_point, qmin, qmax)
    out = torch.empty(acc.shape, dtype=storage)
    if acc.numel():
        kernels().requantize_q31(_buffer(acc), _buffer(out), code, scale, int(zero_point), qmin, qmax)
    return out


def matmul_u8s8(a: torch.Tensor, a_zero_point: int, b: torch.Tensor, b_zero_points, saturate_pairs=False):
    """int32 [M, N] = (a - a_zp) @ (b - b_zp).T for a uint8 [M, K] and b int8 [N, K].

    ``a`` and ``b`` may also be quint8 / qint8 tensors: their integer memory is read in place
    (the zero points passed here are the ones used)."""
    if a.dtype not in (torch.uint8, torch.quint8) or b.dtype not in (torch.int8, torch.qint8) \
            or a.dim() != 2 or b.dim() != 2:
        raise ValueError("matmul_u8s8 takes a uint8 [M, K] and b int8 [N, K]")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"inner sizes differ: a {tuple(a.shape)}, b {tuple(b.shape)}")
    _check_zero_point(a_zero_point, 0, 255)
    b_zps = _per_row(b_zero_points, b.shape[0], -128, 127)
    a, b = a.contiguous(), b.contiguous()
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.int32)
    kernels().matmul_u8s8(_buffer(a), _buffer(b), _buffer(out), a.shape[0], a.shape[1], b.shape[0],
                          int(a_zero_point), _buffer(b_zps), bool(saturate_pairs))
    return out


def conv(x: torch.Tensor, x_zero_point: int, w: torch.Tensor, w_zero_points, stride=1, padding=0, dilation=1,
         groups: int = 1, transposed: bool = False, output_padding=0) -> torch.Tensor:
    """int32 accumulators of a 1d/2d/3d (transposed) convolution of uint8 x and int8 w."""
    if x.dtype != torch.uint8 or w.dtype != torch.int8:
        raise ValueError("conv takes uint8 x and int8 w")
    dims = x.dim() - 2
    if dims not in (1, 2, 3) or w.dim() != x.dim():
        raise ValueError(f"conv takes x [N, C, *spatial] with 1 to 3 spatial dims and w of the same rank, "
                         f"got {tuple(x.shape)} and {tuple(w.shape)}")
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise ValueError(f"{c} input channels do not divide into {groups} groups")
    if transposed:
        if w.shape[0] != c:
            raise ValueError(f"transposed weight has {w.shape[0]} input channels, x has {c}")
        out_channels = w.shape[1] * groups
    else:
        if w.shape[1] * groups != c:
            raise ValueError(f"weight expects {w.shape[1] * groups} input channels, x has {c}")
        out_channels = w.shape[0]
    if out_channels % groups:
        raise ValueError(f"{out_channels} output channels do not divide into {groups} groups")
    _check_zero_point(x_zero_point, 0, 255)
    w_zps = _per_row(w_zero_points, out_channels, -128, 127)
    pad3 = lambda v, fill: [fill] * (3 - dims) + list(_tuple(v, dims))  # noqa: E731
    x, w = x.contiguous(), w.contiguous()
    in3 = pad3(x.shape[2:], 1)
    k3 = pad3(w.shape[2:], 1)
    try:
        geometry = [pad3(stride, 1), pad3(padding, 0), pad3(dilation, 1), pad3(output_padding, 0)]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"conv geometry: {exc}") from exc
    out_len = []
    for d in range(3):
        span = geometry[2][d] * (k3[d] - 1) + 1
        size = ((in3[d] - 1) * geometry[0][d] - 2 * geometry[1][d] + span + geometry[3][d] if transposed
                else (in3[d] + 2 * geometry[1][d] - span) // geometry[0][d] + 1)
        if size <= 0:
            raise ValueError("conv: the output would be empty")
        out_len.append(size)
    out = torch.empty(n, out_channels, *out_len, dtype=torch.int32)
    kernels().conv3d(_buffer(x), _buffer(w), _buffer(out), n, c, out_channels, int(x_zero_point), _buffer(w_zps),
                     groups, in3, k3, *geometry, bool(transposed))
    return out.reshape(n, out_channels, *out_len[3 - dims:])


def fp16_round(x: torch.Tensor, saturate: bool = False) -> torch.Tensor:
    if x.dtype != torch.float32:
        raise ValueError(f"fp16_round takes float32, not {x.dtype}")
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        kernels().fp16_round(_buffer(x), _buffer(out), bool(saturate))
    return out


def rowwise_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 [rows, row_bytes] in fbgemm's fused rowwise layout (8-bit: float scale/bias; 4-bit: half)."""
    if bits not in (8, 4):
        raise ValueError("bits must be 8 or 4")
    if weight.dtype != torch.float32 or weight.dim() != 2 or weight.shape[1] == 0:
        raise ValueError("rowwise_quantize takes a float32 [rows, dim] with dim > 0")
    rows, dim = weight.shape
    row_bytes = (dim if bits == 8 else (dim + 1) // 2) + (8 if bits == 8 else 4)
    weight = weight.contiguous()
    out = torch.zeros(rows, row_bytes, dtype=torch.uint8)
    if rows:
        kernels().rowwise_quantize(_buffer(weight), _buffer(out), rows, dim, bits)
    return out


def embedding_bag_rowwise(table: torch.Tensor, dim: int, bits: int, indices, offsets, mode: str = "sum",
                          per_sample_weights=None, include_last_offset: bool = False) -> torch.Tensor:
    if bits not in (8, 4) or mode not in ("sum", "mean"):
        raise ValueError("bits must be 8 or 4 and mode sum or mean")
    row_bytes = (dim if bits == 8 else (dim + 1) // 2) + (8 if bits == 8 else 4)
    if table.dtype != torch.uint8 or table.dim() != 2 or table.shape[1] != row_bytes:
        raise ValueError(f"a {bits}-bit table of dim {dim} is uint8 [rows, {row_bytes}]")
    indices = torch.as_tensor(indices).to(torch.int64).reshape(-1).contiguous()
    offsets = torch.as_tensor(offsets).to(torch.int64).reshape(-1)
    if not include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([indices.numel()])])
    offsets = offsets.contiguous()
    if offsets.numel() == 0 or offsets[0] != 0 or offsets[-1] != indices.numel() or (offsets.diff() < 0).any():
        raise ValueError("offsets must start at 0, never decrease, and end at len(indices)")
    if indices.numel() and (indices.min() < 0 or indices.max() >= table.shape[0]):
        raise ValueError(f"indices must lie in [0, {table.shape[0]})")
    weights = None
    if per_sample_weights is not None:
        weights = torch.as_tensor(per_sample_weights, dtype=torch.float32).reshape(-1).contiguous()
        if weights.numel() != indices.numel():
            raise ValueError("one per-sample weight per index")
    bags = offsets.numel() - 1
    out = torch.empty(bags, dim, dtype=torch.float32)
    table = table.contiguous()
    kernels().embedding_bag_rowwise(_buffer(table), table.shape[0], dim, bits, _buffer(indices), _buffer(offsets),
                                    bags, _buffer(out), None if weights is None else _buffer(weights), mode == "mean")
    return out


# --- helpers ------------------------------------------------------------------------------

def _check_zero_point(zp, qmin, qmax):
    if int(zp) != zp or not qmin <= int(zp) <= qmax:
        raise ValueError(f"zero point {zp} must be an integer in [{qmin}, {qmax}]")


def _per_row(values, rows, lo, hi) -> torch.Tensor:
    values = torch.as_tensor(values).to(torch.int64).reshape(-1)
    if values.numel() == 1:
        values = values.expand(rows)
    if values.numel() != rows:
        raise ValueError(f"{values.numel()} zero points for {rows} output channels")
    if (values < lo).any() or (values > hi).any():
        raise ValueError(f"weight zero points must lie in [{lo}, {hi}]")
    return values.to(torch.int32).contiguous()


def _int32_matrix(acc, name):
    if not isinstance(acc, torch.Tensor) or acc.dtype != torch.int32 or acc.dim() < 1:
        raise ValueError(f"{name} must be an int32 tensor")
    return acc.contiguous()


def _tuple(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(i) for i in v)
    if len(v) != n:
        raise ValueError(f"expected {n} values, got {v}")
    return v


# --- reference ops -----------------------------------------------------------------------

@dataclass(frozen=True)
class Rules:
    """Which backend's arithmetic a reference op reproduces (see the module docstring)."""

    requant: str = "float"  # float (fbgemm, x86) | q31 (qnnpack's fixed point)
    saturate_pairs: bool = False  # AVX2 vpmaddubsw


FBGEMM = Rules()


def _weight_parts(w: torch.Tensor, values: bool = True):
    """(int8 values, scales, zero points, axis) of a quantized weight, per tensor or per channel
    (values None when not asked for)."""
    if w.dtype != torch.qint8:
        raise ValueError(f"weights are qint8, not {w.dtype}")
    ints = w.int_repr() if values else None
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return ints, torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()]), None
    return ints, w.q_per_channel_scales(), w.q_per_channel_zero_points(), w.q_per_channel_axis()


def _output(acc, x_scale, w_scales, bias, out_scale, out_zp, relu, rules: Rules, channel_dim):
    """Requantize accumulators whose output channels lie along ``channel_dim``."""
    moved = acc.movedim(channel_dim, -1).contiguous()
    channels = moved.shape[-1]
    act_w = (torch.tensor(float(x_scale), dtype=torch.float32) * w_scales.to(torch.float32)).expand(channels).contiguous()
    if rules.requant == "q31":
        if w_scales.numel() != 1:
            raise ValueError("the q31 rule takes a per-tensor weight scale")
        flat = moved.reshape(-1, channels)
        if bias is not None:
            flat = flat + torch.round(bias.to(torch.float32) / act_w).to(torch.int32)
        q = requantize_q31(flat.to(torch.int32), float(act_w[0] / torch.tensor(out_scale, dtype=torch.float32)),
                           out_zp, torch.quint8)
        if relu:
            q = q.clamp_min(out_zp)
    else:
        multiplier = act_w / torch.tensor(out_scale, dtype=torch.float32)
        bias_over = None if bias is None else bias.to(torch.float32) / act_w
        q = requantize_float(moved.reshape(-1, channels), multiplier, out_zp, torch.quint8, bias_over, relu)
    q = q.reshape(moved.shape).movedim(-1, channel_dim)
    return torch._make_per_tensor_quantized_tensor(q.contiguous(), out_scale, out_zp)


def linear(x: torch.Tensor, w: torch.Tensor, bias, out_scale: float, out_zero_point: int, relu: bool = False,
           rules: Rules = FBGEMM) -> torch.Tensor:
    """Quantized linear (quint8 x, qint8 w, float bias) -> quint8, by ``rules``."""
    if x.dtype != torch.quint8:
        raise ValueError("linear takes a quint8 input")
    _, w_scales, w_zps, _axis = _weight_parts(w, values=False)
    lead = x.shape[:-1]
    # the quantized tensors' integer memory is read in place (no int_repr copies)
    acc = matmul_u8s8(x.contiguous().reshape(-1, x.shape[-1]), x.q_zero_point(), w.contiguous(), w_zps,
                      rules.saturate_pairs)
    out = _output(acc, x.q_scale(), w_scales, bias, out_scale, out_zero_point, relu, rules, -1)
    return out.reshape(*lead, w.shape[0])


def conv_nd(x: torch.Tensor, w: torch.Tensor, bias, out_scale: float, out_zero_point: int, stride=1, padding=0,
            dilation=1, groups=1, relu=False, transposed=False, output_padding=0, rules: Rules = FBGEMM):
    """Quantized conv / conv-transpose 1d-3d (quint8 x, qint8 w, float bias) -> quint8."""
    if x.dtype != torch.quint8:
        raise ValueError("conv takes a quint8 input")
    wq, w_scales, w_zps, axis = _weight_parts(w)
    out_channels = wq.shape[1] * groups if transposed else wq.shape[0]
    if w_zps.numel() > 1 and transposed:
        raise ValueError("per-channel weights of a transposed conv are not in the reference")
    acc = conv(x.int_repr(), x.q_zero_point(), wq, w_zps if w_zps.numel() > 1 else w_zps.expand(out_channels),
               stride, padding, dilation, groups, transposed, output_padding)
    return _output(acc, x.q_scale(), w_scales, bias, out_scale, out_zero_point, relu, rules, 1)


#: torch's quant_utils SMALL_SCALE_THRESHOLD, 6.1e-5 as a float32
SMALL_SCALE = float(torch.tensor(6.1e-5, dtype=torch.float32))


def choose_qparams(x: torch.Tensor, qmin: int = 0, qmax: int = 255) -> tuple[float, int]:
    """Dynamic quantization's input qparams (fbgemm's ChooseQuantizationParams): the float range
    [min(x, 0), max(x, 0)], scale = range / (qmax - qmin) in double (0.1 for a zero range), the
    zero point from whichever end loses less, rounded half to even and clamped; a scale below
    6.1e-5 is raised to it and the range widened accordingly."""
    lo = min(float(x.min()), 0.0) if x.numel() else 0.0
    hi = max(float(x.max()), 0.0) if x.numel() else 0.0
    scale = (hi - lo) / (qmax - qmin)
    as_float = float(torch.tensor(scale, dtype=torch.float32))
    if as_float == 0.0 or math.isinf(float(torch.tensor(1.0, dtype=torch.float32) / as_float)):
        scale = 0.1
    if scale < SMALL_SCALE:  # a tiny range is widened to the smallest scale torch allows
        f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
        original, scale = scale, SMALL_SCALE
        if lo == 0.0:
            hi = f32(SMALL_SCALE * (qmax - qmin))
        elif hi == 0.0:
            lo = f32(-SMALL_SCALE * (qmax - qmin))
        else:
            amplifier = f32(SMALL_SCALE / original)
            lo, hi = f32(lo * amplifier), f32(hi * amplifier)
    from_min, from_max = qmin - lo / scale, qmax - hi / scale
    initial = from_min if abs(qmin) - abs(lo / scale) < abs(qmax) - abs(hi / scale) else from_max
    zero_point = qmin if initial < qmin else qmax if initial > qmax else int(round(initial))
    return scale, zero_point


def _minmax_qparams(lo: float, hi: float, qmin: int, qmax: int, symmetric: bool = False) -> tuple[float, int]:
    """MinMax observers' rule (torch.ao's _calculate_qparams), in float32 as they compute it."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    eps = torch.finfo(torch.float32).eps
    if symmetric:
        bound = max(-lo, hi)
        scale = max(float(torch.tensor(bound, dtype=torch.float32) / ((qmax - qmin) / 2)), eps)
        zero_point = 0 if qmin < 0 else (qmin + qmax + 1) // 2
        return scale, zero_point
    scale = float(torch.tensor(hi - lo, dtype=torch.float32) / float(qmax - qmin))
    scale = max(scale, eps)
    zero_point = qmin - round(float(torch.tensor(lo, dtype=torch.float32) / torch.tensor(scale, dtype=torch.float32)))
    return scale, int(min(max(zero_point, qmin), qmax))


def minmax_observer_qparams(x: torch.Tensor, qdtype=torch.quint8, symmetric: bool = False, reduce_range=False):
    """MinMaxObserver's calculate_qparams after one observation of ``x``."""
    _, _, qmin, qmax = _check_dtype(qdtype)
    if reduce_range:
        qmin, qmax = (qmin // 2, qmax // 2) if qmin < 0 else (0, 127)
    return _minmax_qparams(float(x.min()), float(x.max()), qmin, qmax, symmetric)


def per_channel_minmax_qparams(x: torch.Tensor, axis: int = 0, qdtype=torch.quint8, symmetric: bool = False):
    """PerChannelMinMaxObserver's calculate_qparams: one (scale, zero point) per channel."""
    _, _, qmin, qmax = _check_dtype(qdtype)
    moved = x.movedim(axis, 0).reshape(x.shape[axis], -1)
    pairs = [_minmax_qparams(float(r.min()), float(r.max()), qmin, qmax, symmetric) for r in moved]
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def moving_average_minmax(batches, averaging_constant: float = 0.01):
    """MovingAverageMinMaxObserver's running (min, max): the first batch sets them, then
    min += c * (batch_min - min), likewise max, in float32."""
    lo = hi = None
    c = torch.tensor(averaging_constant, dtype=torch.float32)
    for batch in batches:
        bmin, bmax = batch.min().to(torch.float32), batch.max().to(torch.float32)
        if lo is None:
            lo, hi = bmin, bmax
        else:
            lo = lo + c * (bmin - lo)
            hi = hi + c * (bmax - hi)
    return float(lo), float(hi)


def dynamic_linear(x: torch.Tensor, w: torch.Tensor, bias, reduce_range: bool = True, rules: str = "fbgemm"):
    """Dynamic int8 linear. x is quantized per call over [min(x, 0), max(x, 0)], then u8 x s8 products.

    rules="fbgemm" (and x86): 0..127 with reduce_range, x / scale in double, output
    fma(acc, x_scale * w_scale[j], bias[j]). rules="qnnpack": reduce_range ignored (0..255, as
    qnnpack warns), the float quantize rule, output (x_scale * w_scale) * acc + bias unfused."""
    if x.dtype != torch.float32:
        raise ValueError("dynamic linear takes float32 input")
    if rules not in ("fbgemm", "qnnpack"):
        raise ValueError(f"rules: fbgemm or qnnpack, not {rules!r}")
    qnnpack = rules == "qnnpack"
    _, w_scales, w_zps, _axis = _weight_parts(w, values=False)
    qmax = 127 if reduce_range and not qnnpack else 255
    x_scale, x_zp = choose_qparams(x, 0, qmax)
    xq = quantize(x.reshape(-1, x.shape[-1]).contiguous(), [x_scale], [x_zp], torch.quint8, qrange=(0, qmax),
                  divide=not qnnpack)
    acc = matmul_u8s8(xq, x_zp, w.contiguous(), w_zps).to(torch.float32)
    scale = (torch.tensor(x_scale, dtype=torch.float32) * w_scales.to(torch.float32)).expand(acc.shape).contiguous()
    bias = torch.zeros(acc.shape[1]) if bias is None else bias.to(torch.float32)
    if qnnpack:
        out = scale * acc + bias
    else:  # one fused multiply-add, as fbgemm's float output stage
        out = torch.addcmul(bias.expand(acc.shape), acc, scale)
    return out.reshape(*x.shape[:-1], w.shape[0])


def dynamic_linear_fp16(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """fp16 dynamic linear: weights rounded to half (saturated to +-65504), float32 matmul."""
    w16 = fp16_round(weight.to(torch.float32).contiguous(), saturate=True)
    return torch.nn.functional.linear(x, w16, bias)


# --- a quantized eager model run on the reference ----------------------------------------

class Unsupported(Exception):
    """The model holds a quantized module the reference has no op for (the reason says which)."""


def _ref_linear(relu):
    def forward(self, x):
        return linear(x, self.weight(), self.bias(), self.scale, self.zero_point, relu=relu)
    return forward


def _ref_conv(relu, transposed):
    def forward(self, x):
        return conv_nd(x, self.weight(), self.bias(), self.scale, self.zero_point, self.stride, self.padding,
                       self.dilation, self.groups, relu=relu, transposed=transposed,
                       output_padding=self.output_padding if transposed else 0)
    return forward


def _ref_dynamic_linear(self, x):
    weight, bias = self._packed_params._weight_bias()
    if weight.dtype == torch.float16 or not weight.is_quantized:
        return dynamic_linear_fp16(x, weight.float(), bias)
    return dynamic_linear(x, weight, bias, reduce_range=True)  # nnqd.Linear's forward asks for it


def dynamic_lstm(x: torch.Tensor, weights: dict, biases: dict, num_layers: int, bidirectional: bool,
                 hx=None, reduce_range: bool = True):
    """A dynamic-quantized LSTM ([T, B, I] input) on the reference linear ops: linear_ih over the
    whole sequence once, then per step gates = linear_hh(h) + that step's projection (each a
    dynamic linear with its bias), then torch's
    float sigmoid/tanh and c' = f * c + i * g, h' = o * tanh(c') in the order ATen's cell uses.
    Returns (output, (h_n, c_n))."""
    def linear(inp, w, b):
        if w.is_quantized:
            return dynamic_linear(inp, w, b, reduce_range)
        return dynamic_linear_fp16(inp, w.float(), b)

    steps, batch = x.shape[:2]
    directions = 2 if bidirectional else 1
    hidden = weights["weight_hh_l0"].shape[1]
    if hx is None:
        h0 = torch.zeros(num_layers * directions, batch, hidden)
        c0 = torch.zeros_like(h0)
    else:
        h0, c0 = hx
    layer_input, h_n, c_n = x, [], []
    for layer in range(num_layers):
        outputs = []
        for d in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = weights[f"weight_ih{suffix}"], weights[f"weight_hh{suffix}"]
            b_ih, b_hh = biases.get(f"bias_ih{suffix}"), biases.get(f"bias_hh{suffix}")
            h, c = h0[layer * directions + d], c0[layer * directions + d]
            order = range(steps - 1, -1, -1) if d else range(steps)
            out = [None] * steps
            # the input projection of the whole sequence at once (one set of dynamic qparams for
            # all steps), as ATen's full layer precomputes it on CPU
            pre = linear(layer_input, w_ih, b_ih)
            for t in order:
                gates = linear(h, w_hh, b_hh) + pre[t]
                i, f, g, o = gates.unsafe_chunk(4, 1)
                i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                c = (f * c).add_(i * g)
                h = o * c.tanh()
                out[t] = h
            outputs.append(torch.stack(out))
            h_n.append(h)
            c_n.append(c)
        layer_input = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
    return layer_input, (torch.stack(h_n), torch.stack(c_n))


def _ref_dynamic_lstm(self, x, hx=None):
    if self.batch_first or x.dim() != 3:
        raise Unsupported("the reference LSTM takes unbatched-first 3-d input [T, B, I]")
    parts = self._weight_bias()
    return dynamic_lstm(x, parts["weight"], parts["bias"], self.num_layers, self.bidirectional, hx, reduce_range=True)


def _ref_quantize(self, x):
    scale, zp = float(self.scale), int(self.zero_point)
    return torch._make_per_tensor_quantized_tensor(quantize(x.contiguous(), [scale], [zp], self.dtype), scale, zp)


def _ref_dequantize(self, x):
    if not isinstance(x, torch.Tensor) or not x.is_quantized:
        return x
    if x.qscheme() != torch.per_tensor_affine or x.dtype != torch.quint8:
        raise Unsupported(f"dequantize of {x.dtype} {x.qscheme()}")
    return dequantize(x.int_repr(), [x.q_scale()], [x.q_zero_point()], x.dtype)


def _ref_qfunctional(self):
    """QFunctional.add / add_relu: both operands dequantized, added in float, quantized again."""
    def add(a, b, relu=False):
        total = (dequantize(a.int_repr(), [a.q_scale()], [a.q_zero_point()], a.dtype)
                 + dequantize(b.int_repr(), [b.q_scale()], [b.q_zero_point()], b.dtype))
        if relu:
            total = torch.relu(total)
        scale, zp = float(self.scale), int(self.zero_point)
        return torch._make_per_tensor_quantized_tensor(quantize(total, [scale], [zp], torch.quint8), scale, zp)

    return add


def _substitutions():
    from .compat import nn_quantized

    nnq, nnqd, nniq = nn_quantized()
    table = {nnq.Linear: _ref_linear(False), nniq.LinearReLU: _ref_linear(True),
             nnqd.Linear: _ref_dynamic_linear, nnqd.LSTM: _ref_dynamic_lstm, nnq.Quantize: _ref_quantize,
             nnq.DeQuantize: _ref_dequantize}
    for d in (1, 2, 3):
        table[getattr(nnq, f"Conv{d}d")] = _ref_conv(False, False)
        table[getattr(nniq, f"ConvReLU{d}d")] = _ref_conv(True, False)
        table[getattr(nnq, f"ConvTranspose{d}d")] = _ref_conv(False, True)
    return table


#: modules that compute nothing quantized (containers, float activations, identities)
_PASSIVE = ("Sequential", "ModuleList", "ModuleDict", "Identity", "ReLU", "Dropout", "QuantStub", "DeQuantStub",
            "LinearPackedParams", "PackedParameter")


def reference_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an eager quantized model whose quantized modules run the reference ops.

    Raises Unsupported naming the first quantized module type the reference cannot run
    (dynamic LSTM, quantized functional add, embeddings and the like).
    """
    import copy
    import types

    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, torch.nn.Module):
        raise Unsupported("the reference runs eager module trees, not TorchScript or graph modules")
    if isinstance(model, torch.fx.GraphModule):
        raise Unsupported("the reference runs eager module trees, not FX graph modules")
    table = _substitutions()
    copied = copy.deepcopy(model)
    for name, module in copied.named_modules():
        kind = type(module)
        if kind.__name__ == "QFunctional":
            add = _ref_qfunctional(module)
            module.add = add
            module.add_relu = lambda a, b, add=add: add(a, b, relu=True)
            continue
        if ".reference." in kind.__module__:
            raise Unsupported(f"{kind.__name__} ({name}) is PyTorch's reference module: it computes in float, "
                              "there is no quantized arithmetic to compare")
        if kind in table:
            module.forward = types.MethodType(table[kind], module)
        elif kind.__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized",
                                         "torch.nn.quantized", "torch.ao.nn.quantizable")):
            if kind.__name__ not in _PASSIVE:
                raise Unsupported(f"the reference has no op for {kind.__name__} ({name or 'the model'})")
    return copied


def reference_output(model: torch.nn.Module, example):
    """The output of ``model`` with its quantized modules run on the reference kernels."""
    ref = reference_model(model)
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        return ref(*args)
