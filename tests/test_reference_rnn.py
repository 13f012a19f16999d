"""The reference's dynamic GRU and RNN cells against the native quantized modules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import reference as R
from harness.backends import using, supported_backends
from harness.notices import quiet

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
#: fbgemm and x86 share fbgemm's dynamic linear: exact. qnnpack ignores reduce_range (steps apart),
#: onednn rounds float32 differently (ulps apart): their figures are measured, not asserted.
EXACT_ENGINES = [b for b in ("fbgemm", "x86") if b in supported_backends()]


def _dynamic(module, backend, dtype=torch.qint8):
    from harness.compat import ao

    with quiet(), using(backend):
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
    with quiet(), using(backend):
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
    with quiet(), using(backend):
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


# --- quantized embeddings on the rowwise kernel -----------------------------------------------

def _embedding_bag(rows, dim, bits, mode, last, seed):
    from harness.compat import ao

    torch.manual_seed(seed % 2**31)
    qconfig = ao().float_qparams_weight_only_qconfig if bits == 8 else ao().float_qparams_weight_only_qconfig_4bit
    float_bag = torch.nn.EmbeddingBag(rows, dim, mode=mode, include_last_offset=last)
    float_bag.qconfig = qconfig
    with quiet():
        return ao().quantize_dynamic(torch.nn.Sequential(float_bag).eval(), {torch.nn.EmbeddingBag: qconfig})[0]


@pytest.mark.parametrize("backend", supported_backends())
@SOME
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 12), dim=st.sampled_from([2, 4, 8, 12, 16]),
       bits=st.sampled_from([8, 4]), last=st.booleans(), bags=st.integers(1, 5), per_sample=st.booleans())
def test_quantized_embedding_bag_module_is_exact(backend, seed, rows, dim, bits, last, bags, per_sample):
    """nnq.EmbeddingBag (8- and 4-bit rowwise, include_last_offset, per-sample weights): the
    module's weight laid out as torch's prepack does, on the rowwise kernel; bit for bit on
    every engine (the op is the same CPU kernel under each)."""
    mode = "sum"
    model = _embedding_bag(rows, dim, bits, mode, last, seed)
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 4, (bags,), generator=g)
    indices = torch.randint(0, rows, (int(sizes.sum()),), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    offsets = offsets if last else offsets[:-1]
    weights = torch.rand(indices.numel(), generator=g) if per_sample and mode == "sum" else None
    with quiet(), using(backend):
        native = model(indices, offsets, per_sample_weights=weights)
        ours = R.reference_output(model, (indices, offsets, weights))
    assert torch.equal(ours, native)


@pytest.mark.parametrize("backend", supported_backends())
@SOME
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 12), dim=st.sampled_from([2, 4, 8, 12, 16]),
       shape=st.sampled_from([(5,), (2, 3), (1,)]))
def test_quantized_8bit_embedding_module_is_exact(backend, seed, rows, dim, shape):
    from harness.compat import ao

    torch.manual_seed(seed % 2**31)
    qconfig = ao().float_qparams_weight_only_qconfig
    emb = torch.nn.Embedding(rows, dim)
    emb.qconfig = qconfig
    with quiet():
        model = ao().quantize_dynamic(torch.nn.Sequential(emb).eval(), {torch.nn.Embedding: qconfig})[0]
    indices = torch.randint(0, rows, shape, generator=torch.Generator().manual_seed(seed))
    with quiet(), using(backend):
        native, ours = model(indices), R.reference_output(model, indices)
    assert torch.equal(ours, native)


def test_native_quantized_embedding_bag_sums_whatever_its_mode_says():
    """A finding the reference makes visible: nnq.EmbeddingBag(mode="mean") calls the byte kernel
    with mode 0 (sum), so its bags are sums; the reference computes the mean the module names."""
    model = _embedding_bag(4, 3, 8, "mean", False, 0)
    indices, offsets = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 3])
    with quiet():
        native, ours = model(indices, offsets), R.reference_output(model, (indices, offsets))
    assert torch.allclose(native[0], ours[0] * 3, atol=1e-6) and torch.equal(native[1], ours[1])


def test_rowwise_table_refuses_other_weights():
    with pytest.raises(ValueError, match="quint8 or quint4x2 with float qparams"):
        R.rowwise_table(torch.quantize_per_tensor(torch.rand(3, 4), 0.1, 0, torch.quint8))
