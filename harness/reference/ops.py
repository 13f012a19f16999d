"""Reference ops composed from the primitives: linear and conv (with fused relu), observers'
qparams, dynamic linear (qint8 and fp16) and the dynamic LSTM.

Variants name the backend rule they reproduce: ``requant="float"`` is fbgemm/x86's (float
multiplier, float bias divided by input_scale * weight_scale), ``requant="q31"`` is qnnpack's
fixed-point multiplier; ``rules="qnnpack"`` in the dynamic linear ignores reduce_range;
``saturate_pairs`` is fbgemm's arithmetic on a CPU without AVX512-VNNI (``fbgemm_saturates_pairs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.compat import has_avx512_vnni
from harness.reference.primitives import (
    _check_dtype,
    conv,
    fma_columns,
    fp16_round,
    linear_u8s8,
    matmul_u8s8,
    quantize,
    requantize_float,
    requantize_q31,
)

@dataclass(frozen=True)
class Rules:
    """Which backend's arithmetic a reference op reproduces (see the module docstring)."""

    requant: str = "float"  # float (fbgemm, x86) | q31 (qnnpack's fixed point)
    saturate_pairs: bool = False  # AVX2 vpmaddubsw


FBGEMM = Rules()


def fbgemm_saturates_pairs() -> bool:
    """Whether fbgemm's u8 x s8 products (fbgemm and x86 backends) saturate in int16 pairs on this CPU.

    fbgemm picks its kernels from the CPU, not from ATEN_CPU_CAPABILITY: with AVX512-VNNI,
    vpdpbusd sums the products exactly into int32 (the reference's default, ``FBGEMM``); without it
    (AVX2, and AVX512 without VNNI) vpmaddubsw first sums adjacent products into int16, saturating.
    Activations within 0..127 (reduce_range, which fbgemm's qconfigs ask for) never saturate; full
    8-bit activations can, and then ``Rules(saturate_pairs=True)`` (``saturate_pairs=True`` in the
    dynamic linear) reproduces the native result."""
    return not has_avx512_vnni()


def _weight_parts(w: torch.Tensor, values: bool = True):
    """(int8 values, scales, zero points, axis) of a quantized weight, per tensor or per channel
    (values None when not asked for)."""
    if w.dtype != torch.qint8:
        raise ValueError(f"weights are qint8, not {w.dtype}")
    ints = w.int_repr() if values else None
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return ints, torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()]), None
    return ints, w.q_per_channel_scales(), w.q_per_channel_zero_points(), w.q_per_channel_axis()


def _float_terms(x_scale, w_scales, bias, out_scale):
    """fbgemm's float requantization terms: the multiplier x_scale * w_scale / out_scale and the
    bias divided by x_scale * w_scale, each in float32 (a Python scalar meets a float32 tensor as
    a float32), one per weight scale (the bias one per output channel)."""
    act_w = w_scales.to(torch.float32) * float(x_scale)
    multiplier = act_w / float(out_scale)
    return multiplier, None if bias is None else bias.to(torch.float32) / act_w


def _output(acc, x_scale, w_scales, bias, out_scale, out_zp, relu, rules: Rules, channel_dim):
    """Requantize accumulators whose output channels lie along ``channel_dim``."""
    moved = acc.movedim(channel_dim, -1).contiguous()
    channels = moved.shape[-1]
    if rules.requant == "q31":
        act_w = (torch.tensor(float(x_scale), dtype=torch.float32) * w_scales.to(torch.float32)).expand(channels)
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
        multiplier, bias_over = _float_terms(x_scale, w_scales, bias, out_scale)
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
    rows = x.contiguous().reshape(-1, x.shape[-1])
    if rules.requant == "float":  # summed and requantized in one kernel call, as fbgemm fuses them
        multiplier, bias_over = _float_terms(x.q_scale(), w_scales, bias, out_scale)
        q = linear_u8s8(rows, x.q_zero_point(), w.contiguous(), w_zps, multiplier, out_zero_point, bias_over,
                        relu, rules.saturate_pairs)
        return torch._make_per_tensor_quantized_tensor(q, out_scale, out_zero_point).reshape(*lead, w.shape[0])
    acc = matmul_u8s8(rows, x.q_zero_point(), w.contiguous(), w_zps, rules.saturate_pairs)
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


def observer_output(observer, x: torch.Tensor):
    """A MinMax observer's (output, scale, zero point) after observing ``x`` on top of its state:
    the output is ``x`` unchanged; min and max (per tensor, or per channel along ``ch_axis``)
    take in ``x``'s, and the qparams follow ``_minmax_qparams`` (scale float32, zero point int32,
    one per channel, as torch's calculate_qparams returns them)."""
    kind = type(observer).__name__
    if kind not in ("MinMaxObserver", "PerChannelMinMaxObserver"):
        raise ValueError(f"the reference has the MinMax observers' rule, not {kind}'s")
    symmetric = observer.qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric)
    if not symmetric and observer.qscheme not in (torch.per_tensor_affine, torch.per_channel_affine):
        raise ValueError(f"an observer's {observer.qscheme} qparams")
    if kind == "PerChannelMinMaxObserver":
        rows = x.detach().movedim(observer.ch_axis, 0).reshape(x.shape[observer.ch_axis], -1)
        lows, highs = rows.min(dim=1).values, rows.max(dim=1).values
    else:
        lows, highs = x.detach().min().reshape(1), x.detach().max().reshape(1)
    seen_lo, seen_hi = observer.min_val.reshape(-1), observer.max_val.reshape(-1)
    if seen_lo.numel():  # what the observer saw before (a loaded state): the running min and max
        lows, highs = torch.minimum(lows, seen_lo), torch.maximum(highs, seen_hi)
    pairs = [_minmax_qparams(float(lo), float(hi), observer.quant_min, observer.quant_max, symmetric)
             for lo, hi in zip(lows.tolist(), highs.tolist())]
    return (x, torch.tensor([p[0] for p in pairs], dtype=torch.float32),
            torch.tensor([p[1] for p in pairs], dtype=torch.int32))


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


def dynamic_linear(x: torch.Tensor, w: torch.Tensor, bias, reduce_range: bool = True, rules: str = "fbgemm",
                   saturate_pairs: bool = False):
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
    acc = matmul_u8s8(xq, x_zp, w.contiguous(), w_zps, saturate_pairs).to(torch.float32)
    scale = torch.tensor(x_scale, dtype=torch.float32) * w_scales.to(torch.float32)
    bias = torch.zeros(acc.shape[1]) if bias is None else bias.to(torch.float32)
    if qnnpack:
        out = scale * acc + bias
    else:  # one fused multiply-add, as fbgemm's float output stage
        out = fma_columns(acc, scale, bias)
    return out.reshape(*x.shape[:-1], w.shape[0])


def dynamic_linear_fp16(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """fp16 dynamic linear: weights rounded to half (saturated to +-65504), float32 matmul."""
    w16 = fp16_round(weight.to(torch.float32).contiguous(), saturate=True)
    return torch.nn.functional.linear(x, w16, bias)



def rowwise_table(qweight: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """A quantized embedding weight (quint8 or quint4x2, per_channel_affine_float_qparams) in
    fbgemm's fused rowwise layout, as torch's embedding prepack lays it out: each row's integer
    values, then its scale and its bias -zero_point * scale (float32 for 8 bits, half for 4).
    Returns (table, dim, bits) for primitives.embedding_bag_rowwise."""
    if qweight.qscheme() != torch.per_channel_affine_float_qparams or qweight.dtype not in (torch.quint8,
                                                                                            torch.quint4x2):
        raise ValueError(f"a rowwise embedding weight is quint8 or quint4x2 with float qparams, not "
                         f"{qweight.dtype} {qweight.qscheme()}")
    rows, dim = qweight.shape
    bits = 4 if qweight.dtype == torch.quint4x2 else 8
    scale = qweight.q_per_channel_scales().to(torch.float32)
    bias = -qweight.q_per_channel_zero_points().to(torch.float32) * scale
    stored = torch.float16 if bits == 4 else torch.float32
    as_bytes = [v.to(stored).reshape(rows, 1).contiguous().view(torch.uint8) for v in (scale, bias)]
    return torch.cat([qweight.int_repr().reshape(rows, -1), *as_bytes], 1).contiguous(), dim, bits


def _dynamic_projection(reduce_range: bool):
    """The dynamic linear a quantized RNN applies (qint8 weights; fp16 ones in float)."""
    def linear(inp, w, b):
        if w.is_quantized:
            return dynamic_linear(inp, w, b, reduce_range)
        return dynamic_linear_fp16(inp, w.float(), b)
    return linear


def lstm_cell(pre, state, w_hh, b_hh, linear):
    """One LSTM step from the input projection ``pre``: ATen's LSTMCell, operation for operation."""
    h, c = state
    gates = linear(h, w_hh, b_hh) + pre
    i, f, g, o = gates.unsafe_chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = (f * c).add_(i * g)
    return o * c.tanh(), c


def gru_cell(pre, h, w_hh, b_hh, linear):
    """One GRU step from the input projection ``pre``: ATen's GRUCell, operation for operation
    (reset and update gates from hidden + input, n = tanh(in + r * hn), h' = (h - n) * z + n).
    The gates are computed in place on the hidden projection's chunks, as ATen does: a strided
    view too narrow for one vector runs sigmoid and tanh in the scalar loop, whose results can
    differ from the vectorized one's in the last bit (seen on AVX2)."""
    ig, hg = pre.unsafe_chunk(3, 1), linear(h, w_hh, b_hh).unsafe_chunk(3, 1)
    reset = hg[0].add_(ig[0]).sigmoid_()
    update = hg[1].add_(ig[1]).sigmoid_()
    new = ig[2].add(hg[2].mul_(reset)).tanh_()
    return (h - new).mul_(update).add_(new)


def dynamic_cell(mode: str, x, state, weights: dict, biases: dict, reduce_range: bool = True,
                 nonlinearity: str = "tanh"):
    """One step of a dynamic-quantized LSTMCell / GRUCell / RNNCell ([B, I] input): both
    projections are dynamic linears with their biases, then the cell's float arithmetic."""
    linear = _dynamic_projection(reduce_range)
    pre = linear(x, weights["weight_ih"], biases.get("bias_ih"))
    w_hh, b_hh = weights["weight_hh"], biases.get("bias_hh")
    if mode == "LSTM":
        return lstm_cell(pre, state, w_hh, b_hh, linear)
    if mode == "GRU":
        return gru_cell(pre, state, w_hh, b_hh, linear)
    total = linear(state, w_hh, b_hh) + pre
    return total.tanh() if nonlinearity == "tanh" else total.relu()


def dynamic_rnn(mode: str, x: torch.Tensor, weights: dict, biases: dict, num_layers: int, bidirectional: bool,
                hx=None, reduce_range: bool = True):
    """A dynamic-quantized LSTM or GRU ([T, B, I] input) on the reference linear ops: linear_ih
    over the whole sequence once (one set of dynamic qparams for all steps, as ATen's full layer
    precomputes it on CPU), then per step the cell (lstm_cell, gru_cell).
    Returns (output, (h_n, c_n)) for an LSTM, (output, h_n) for a GRU."""
    if mode not in ("LSTM", "GRU"):
        raise ValueError(f"mode: LSTM or GRU, not {mode!r}")
    linear, lstm = _dynamic_projection(reduce_range), mode == "LSTM"
    steps, batch = x.shape[:2]
    directions = 2 if bidirectional else 1
    hidden = weights["weight_hh_l0"].shape[1]
    if hx is None:
        h0 = torch.zeros(num_layers * directions, batch, hidden)
        c0 = torch.zeros_like(h0)
    else:
        h0, c0 = hx if lstm else (hx, None)
    layer_input, h_n, c_n = x, [], []
    for layer in range(num_layers):
        outputs = []
        for d in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = weights[f"weight_ih{suffix}"], weights[f"weight_hh{suffix}"]
            b_ih, b_hh = biases.get(f"bias_ih{suffix}"), biases.get(f"bias_hh{suffix}")
            k = layer * directions + d
            state = (h0[k], c0[k]) if lstm else h0[k]
            out = [None] * steps
            pre = linear(layer_input, w_ih, b_ih)
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                if lstm:
                    state = lstm_cell(pre[t], state, w_hh, b_hh, linear)
                    out[t] = state[0]
                else:
                    state = out[t] = gru_cell(pre[t], state, w_hh, b_hh, linear)
            outputs.append(torch.stack(out))
            h_n.append(state[0] if lstm else state)
            c_n.append(state[1] if lstm else None)
        layer_input = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
    return (layer_input, (torch.stack(h_n), torch.stack(c_n))) if lstm else (layer_input, torch.stack(h_n))


def dynamic_lstm(x: torch.Tensor, weights: dict, biases: dict, num_layers: int, bidirectional: bool,
                 hx=None, reduce_range: bool = True):
    """dynamic_rnn for an LSTM: returns (output, (h_n, c_n))."""
    return dynamic_rnn("LSTM", x, weights, biases, num_layers, bidirectional, hx, reduce_range)
