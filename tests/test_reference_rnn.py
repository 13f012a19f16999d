"""The reference's dynamic GRU and RNN cells against the native quantized modules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import reference as R
from harness.engines import engine, supported_engines
from harness.notices import quiet

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
#: fbgemm and x86 share fbgemm's dynamic linear: exact. qnnpack ignores reduce_range (steps apart),
#: onednn rounds float32 differently (ulps apart): their figures are measured, not asserted.
EXACT_ENGINES = [b for b in ("fbgemm", "x86") if b in supported_engines()]


def _dynamic(module, backend, dtype=torch.qint8):
    from harness.compat import ao

    with quiet(), engine(backend):
        return ao().quantize_dynamic(torch.nn.Sequential(module).eval(), {type(module)}, dtype=dtype)


@pytest.mark.parametrize("backend", EXACT_ENGINES)
@SOME
@given(seed=st.integers(0, 2**31), steps=st.integers(1, 6), batch=st.integers(1, 3), size=st.integers(1, 5),
       hidden=st.integers(1, 5), layers=st.integers(1, 2), bidirectional=st.booleans())
def test_dynamic_gru_is_exact_with_fbgemm_and_x86(backend, seed, steps, batch, size, hidden, layers, bidirectional):
    """quantize_dynamic's GRU: the input projection over the whole sequence, then ATen's GRUCell
    step by step on dynamic linears with reduce_range; bit for bit."""
    torch.manual_seed(seed % 2**31)
    model = _dynamic(torch.nn.GRU(size, hidden, num_layers=layers, bidirectional=bidirectional), backend)
    x = torch.randn(steps, batch, size, generator=torch.Generator().manual_seed(seed))
    with quiet(), engine(backend):
        native, ours = model(x), R.reference_output(model, x)
    assert torch.equal(ours[0], native[0]) and torch.equal(ours[1], native[1])


@pytest.mark.parametrize("backend", EXACT_ENGINES)
@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell-tanh", "RNNCell-relu"])
@SOME
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 4), size=st.integers(1, 6), hidden=st.integers(1, 6),
       with_state=st.booleans())
def test_dynamic_cells_are_exact_with_fbgemm_and_x86(backend, cell, seed, batch, size, hidden, with_state):
    """One step of each quantized dynamic cell, given a state or starting from zeros: both
    projections are dynamic linears with their own input qparams; bit for bit."""
    name, _, nonlinearity = cell.partition("-")
    torch.manual_seed(seed % 2**31)
    extra = {"nonlinearity": nonlinearity} if nonlinearity else {}
    model = _dynamic(getattr(torch.nn, name)(size, hidden, **extra), backend)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, size, generator=g)
    state_shape = (batch, hidden)
    state = None
    if with_state:
        h = torch.randn(*state_shape, generator=g)
        state = (h, torch.randn(*state_shape, generator=g)) if name == "LSTMCell" else h
    with quiet(), engine(backend):
        native = model[0](x, state)
        ours = R.reference_output(model[0], (x, state))
    native, ours = (native, ours) if name == "LSTMCell" else ((native,), (ours,))
    assert all(torch.equal(a, b) for a, b in zip(ours, native))


def test_fp16_gru_is_within_float_summation_order():
    """fp16 weights: rounded to half, float32 matmul; fbgemm sums in another order (ulps)."""
    torch.manual_seed(0)
    model = _dynamic(torch.nn.GRU(5, 4), EXACT_ENGINES[0] if EXACT_ENGINES else "qnnpack", dtype=torch.float16)
    x = torch.randn(3, 2, 5)
    with quiet():
        native, ours = model(x), R.reference_output(model, x)
    assert (native[0] - ours[0]).abs().max() <= 1e-6
