"""Reference primitives: checked Python entry points to the C++ kernels (harness._kernels).

Every function checks shapes, dtypes and qparams here and raises ValueError before any native
code runs; tensors cross into the extension as buffers over their own memory (ctypes arrays
at ``data_ptr()``), so nothing is copied and the extension never sees a torch object.
``requantize_q31`` is qnnpack's fixed-point requantization; ``saturate_pairs=True`` reproduces
AVX2 vpmaddubsw's int16 pair saturation.
"""

from __future__ import annotations

import ctypes
import math

import torch

try:
    from harness import _kernels
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
    multiplier, bias = _float_requant(multiplier, bias_over_scale, cols, zero_point, qmin, qmax)
    out = torch.empty(acc.shape, dtype=storage)
    if acc.numel():
        kernels().requantize_float(_buffer(acc), _buffer(out), code, _buffer(multiplier),
                                   None if bias is None else _buffer(bias), cols, multiplier.numel(), int(zero_point),
                                   qmin, qmax, relu)
    return out


def _float_requant(multiplier, bias_over_scale, cols: int, zero_point, qmin: int, qmax: int):
    """requantize_float's terms, checked: (multiplier, bias_over_scale or None) as float32."""
    multiplier = torch.as_tensor(multiplier, dtype=torch.float32).reshape(-1).contiguous()
    # min > 0 refuses nan too; max finite refuses inf
    if multiplier.numel() not in (1, cols) or not (float(multiplier.min()) > 0 and math.isfinite(float(multiplier.max()))):
        raise ValueError("multiplier: one or one per column, finite and > 0")
    _check_zero_point(zero_point, qmin, qmax)
    bias = None
    if bias_over_scale is not None:
        bias = torch.as_tensor(bias_over_scale, dtype=torch.float32).reshape(-1).contiguous()
        if bias.numel() != cols:
            raise ValueError(f"bias_over_scale has {bias.numel()} values for {cols} columns")
    return multiplier, bias


def fma_columns(x: torch.Tensor, multiplier, addend) -> torch.Tensor:
    """float32 fma(x[r, j], multiplier[j], addend[j]) with one rounding, on any CPU and any ATen
    dispatch (torch.addcmul fuses only where its vectorized kernels use FMA instructions)."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 2:
        raise ValueError("fma_columns takes a float32 [rows, cols] tensor")
    x, cols = x.contiguous(), x.shape[1]
    multiplier = torch.as_tensor(multiplier, dtype=torch.float32).reshape(-1).contiguous()
    addend = torch.as_tensor(addend, dtype=torch.float32).reshape(-1).contiguous()
    if multiplier.numel() not in (1, cols) or addend.numel() != cols:
        raise ValueError(f"fma_columns: {multiplier.numel()} multipliers and {addend.numel()} addends for {cols} columns")
    out = torch.empty(x.shape, dtype=torch.float32)
    if x.numel():
        kernels().fma_columns(_buffer(x), _buffer(out), _buffer(multiplier), _buffer(addend), cols, multiplier.numel())
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


def _matmul_operands(a: torch.Tensor, a_zero_point: int, b: torch.Tensor, b_zero_points):
    """matmul_u8s8's operands, checked: (a, b, b's zero points as int32), contiguous."""
    if a.dtype not in (torch.uint8, torch.quint8) or b.dtype not in (torch.int8, torch.qint8) \
            or a.dim() != 2 or b.dim() != 2:
        raise ValueError("matmul_u8s8 takes a uint8 [M, K] and b int8 [N, K]")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"inner sizes differ: a {tuple(a.shape)}, b {tuple(b.shape)}")
    _check_zero_point(a_zero_point, 0, 255)
    return a.contiguous(), b.contiguous(), _per_row(b_zero_points, b.shape[0], -128, 127)


def matmul_u8s8(a: torch.Tensor, a_zero_point: int, b: torch.Tensor, b_zero_points, saturate_pairs=False):
    """int32 [M, N] = (a - a_zp) @ (b - b_zp).T for a uint8 [M, K] and b int8 [N, K].

    ``a`` and ``b`` may also be quint8 / qint8 tensors: their integer memory is read in place
    (the zero points passed here are the ones used). Runs on as many threads as torch's intra-op
    setting (``torch.get_num_threads()``); the sums do not depend on the split."""
    a, b, b_zps = _matmul_operands(a, a_zero_point, b, b_zero_points)
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.int32)
    kernels().matmul_u8s8(_buffer(a), _buffer(b), _buffer(out), a.shape[0], a.shape[1], b.shape[0],
                          int(a_zero_point), _buffer(b_zps), bool(saturate_pairs), torch.get_num_threads())
    return out


def linear_u8s8(a: torch.Tensor, a_zero_point: int, b: torch.Tensor, b_zero_points, multiplier, zero_point: int,
                bias_over_scale=None, relu: bool = False, saturate_pairs=False) -> torch.Tensor:
    """requantize_float(matmul_u8s8(a, ...), ...) to uint8 [M, N] in one kernel call: each
    thread's columns are requantized as soon as they are summed, as fbgemm's output stage does.
    The same integers as the two calls in turn."""
    code, storage, qmin, qmax = _check_dtype(torch.quint8)
    a, b, b_zps = _matmul_operands(a, a_zero_point, b, b_zero_points)
    if b.shape[0] == 0:
        return torch.empty(a.shape[0], 0, dtype=storage)
    multiplier, bias = _float_requant(multiplier, bias_over_scale, b.shape[0], zero_point, qmin, qmax)
    out = torch.empty(a.shape[0], b.shape[0], dtype=storage)
    kernels().linear_u8s8(_buffer(a), _buffer(b), _buffer(out), a.shape[0], a.shape[1], b.shape[0],
                          int(a_zero_point), _buffer(b_zps), bool(saturate_pairs), torch.get_num_threads(), code,
                          _buffer(multiplier), None if bias is None else _buffer(bias), multiplier.numel(),
                          int(zero_point), qmin, qmax, relu)
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
    values = torch.as_tensor(values).reshape(-1)
    if values.is_floating_point() and not torch.equal(values, values.round()):
        raise ValueError("zero points must be integers")
    if values.numel() not in (1, rows):
        raise ValueError(f"{values.numel()} zero points for {rows} output channels")
    if values.numel() and not (lo <= int(values.min()) and int(values.max()) <= hi):
        raise ValueError(f"weight zero points must lie in [{lo}, {hi}]")
    if values.numel() == 1:
        return torch.full((rows,), int(values), dtype=torch.int32)
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


