"""Writes a directory the way PyTorch's test_backward_compatibility.py does with generate=True.

Independent of the harness's own writer on purpose: the PyTorch-layout reader is tested
against files made by PyTorch's procedure, not by the code under test. Differences from
PyTorch, all deliberate: eager quantized modules get seeded weights (PyTorch's are
uninitialised memory), and only fbgemm generates, as in PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

import harness.compat as compat
from harness.backends import using
from harness.notices import quiet
from harness.stacks.torch_ao.compat import linear_relu_functional

nnq, nnqd, nniq = compat.nn_quantized()
q = compat.ao()
CONV = dict(kernel_size=3, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")


def _names(directory: Path, test: str, sub: str | None = None) -> dict[str, Path]:
    base = f"TestSerialization.{test}" + (f"_{sub}" if sub else "")
    kinds = ("input", "state_dict", "scripted", "traced", "expected", "package", "get_attr_targets")
    return {k: directory / f"{base}.{k}.pt" for k in kinds}


def _seed_weights(module, shape, bias=True):
    w = torch.randn(*shape)
    if module._get_name().startswith("DynamicQuantizedLinear") and module._packed_params.dtype == torch.float16:
        module.set_weight_bias(w, torch.randn(shape[0]))
        return module
    qw = torch.quantize_per_tensor(w, w.abs().max().item() / 127, 0, torch.qint8)
    module.set_weight_bias(qw, torch.randn(shape[0]) if bias else None)
    return module


def _op(directory, test, module, input_size, sub=None, input_quantized=True, new_zipfile=False):
    f = _names(directory, test, sub)
    x = torch.rand(*input_size).float()
    if input_quantized:
        x = torch.quantize_per_tensor(x, 0.5, 2, torch.quint8)
    torch.save(x, f["input"])
    torch.save(module.state_dict(), f["state_dict"], _use_new_zipfile_serialization=new_zipfile)
    torch.jit.save(torch.jit.script(module), f["scripted"])
    torch.jit.save(torch.jit.trace(module, x), f["traced"])
    torch.save(module(x), f["expected"])


def _op_graph(directory, test, module, input_size):
    f = _names(directory, test)
    x = torch.rand(*input_size).float()
    torch.save(x, f["input"])

    def calibrate(model, data):
        model(data)

    qconfig = {"": q.default_qconfig}
    scripted = q.quantize_jit(torch.jit.script(module), qconfig, calibrate, [x])
    traced = q.quantize_jit(torch.jit.trace(module, x), qconfig, calibrate, [x])
    torch.jit.save(scripted, f["scripted"])
    torch.jit.save(traced, f["traced"])
    torch.save(scripted(x), f["expected"])


def _obs(directory, test, obs, input_size):
    f = _names(directory, test)
    x = torch.rand(*input_size).float()
    torch.save(x, f["input"])
    torch.save(obs(x), f["expected"])
    torch.save(obs.state_dict(), f["state_dict"])


def _package(directory, test, module, input_size):
    f = _names(directory, test)
    x = torch.randn(*input_size)
    torch.save(x, f["input"])
    with torch.package.PackageExporter(f["package"]) as exporter:
        exporter.intern(type(module).__module__)
        exporter.save_pickle("test", "test.pkl", module)
    qfx = compat.quantize_fx()
    prepared = qfx.prepare_fx(module, {"": q.get_default_qconfig("fbgemm")}, example_inputs=(x,))
    prepared(x)
    converted = qfx.convert_fx(prepared)
    torch.save({n.target for n in converted.graph.nodes if n.op == "get_attr"}, f["get_attr_targets"])
    torch.save(converted(x), f["expected"])


class LSTMModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nnqd.LSTM(input_size=3, hidden_size=7, num_layers=1).to(dtype=torch.float)

    def forward(self, x):
        return self.lstm(x)


class QatModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 5)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.linear(x))


def write(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    with quiet(), using("fbgemm"):
        _op(directory, "test_linear", _seed_weights(nnq.Linear(3, 1, bias_=True, dtype=torch.qint8), (1, 3)), [1, 3])
        _op(directory, "test_linear_relu",
            _seed_weights(nniq.LinearReLU(3, 1, bias=True, dtype=torch.qint8), (1, 3)), [1, 3])
        _op(directory, "test_linear_dynamic",
            _seed_weights(nnqd.Linear(3, 1, bias_=True, dtype=torch.qint8), (1, 3)), [1, 3],
            sub="qint8", input_quantized=False)
        _op(directory, "test_linear_dynamic",
            _seed_weights(nnqd.Linear(3, 1, bias_=True, dtype=torch.float16), (1, 3)), [1, 3],
            sub="float16", input_quantized=False)
        for test, bias in (("test_conv2d", True), ("test_conv2d_nobias", False)):
            _op(directory, test, _seed_weights(nnq.Conv2d(3, 3, bias=bias, **CONV), (3, 3, 3, 3), bias), [1, 3, 6, 6])
        _op(directory, "test_conv2d_relu", _seed_weights(nniq.ConvReLU2d(3, 3, bias=True, **CONV), (3, 3, 3, 3)),
            [1, 3, 6, 6])
        _op(directory, "test_conv3d", _seed_weights(nnq.Conv3d(3, 3, bias=True, **CONV), (3, 3, 3, 3, 3)),
            [1, 3, 6, 6, 6])
        _op(directory, "test_conv3d_relu",
            _seed_weights(nniq.ConvReLU3d(3, 3, bias=True, **CONV), (3, 3, 3, 3, 3)), [1, 3, 6, 6, 6])
        for suffix in ("", "_v2", "_v3"):
            for test, bias in (("test_conv2d_graph", True), ("test_conv2d_nobias_graph", False)):
                module = nn.Sequential(q.QuantStub(), nn.Conv2d(3, 3, bias=bias, **CONV))
                _op_graph(directory, test + suffix, module, [1, 3, 6, 6])
        _op(directory, "test_lstm", LSTMModule(), [4, 4, 3], input_quantized=False, new_zipfile=True)
        _obs(directory, "test_per_channel_observer", q.PerChannelMinMaxObserver(), [5, 5])
        _obs(directory, "test_per_tensor_observer", q.MinMaxObserver(), [5, 5])
        model = QatModel()
        model.linear.weight = torch.nn.Parameter(torch.randn(5, 5))
        model.qconfig = q.get_default_qat_qconfig("fbgemm")
        wrapped = q.QuantWrapper(model)
        wrapped.train()
        _obs(directory, "test_default_qat_qconfig", q.prepare_qat(wrapped), [5, 5])
        _package(directory, "test_linear_relu_package_quantization_transforms",
                 linear_relu_functional()(4).eval(), (1, 1, 4, 4))
    return directory
