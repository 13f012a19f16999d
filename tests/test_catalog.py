"""The catalog: every case of PyTorch's BC suite, with PyTorch's module arguments and inputs."""

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest
import torch

from harness.catalog import CatalogError, QuantizedInput, load_catalog, select
from harness.compat import nn_quantized


nnq, nnqd, nniq = nn_quantized()

#: PyTorch's test methods (and sub-names) in test_backward_compatibility.py.
PYTORCH_STEMS = {
    "TestSerialization.test_linear", "TestSerialization.test_linear_relu",
    "TestSerialization.test_linear_dynamic_qint8", "TestSerialization.test_linear_dynamic_float16",
    "TestSerialization.test_conv2d", "TestSerialization.test_conv2d_nobias",
    "TestSerialization.test_conv2d_graph", "TestSerialization.test_conv2d_nobias_graph",
    "TestSerialization.test_conv2d_graph_v2", "TestSerialization.test_conv2d_nobias_graph_v2",
    "TestSerialization.test_conv2d_graph_v3", "TestSerialization.test_conv2d_nobias_graph_v3",
    "TestSerialization.test_conv2d_relu", "TestSerialization.test_conv3d",
    "TestSerialization.test_conv3d_relu", "TestSerialization.test_lstm",
    "TestSerialization.test_per_channel_observer", "TestSerialization.test_per_tensor_observer",
    "TestSerialization.test_default_qat_qconfig",
    "TestSerialization.test_linear_relu_package_quantization_transforms",
}


def test_every_pytorch_bc_test_has_exactly_one_case(catalog):
    stems = [c.pytorch.stem for c in catalog if c.pytorch]
    assert sorted(stems) == sorted(PYTORCH_STEMS)


def test_case_ids_are_stable_strings_not_class_names(catalog):
    ids = {c.id for c in catalog}
    assert {"linear", "linear_dynamic-qint8", "linear_dynamic-float16", "lstm",
            "linear_relu_package_quantization_transforms"} <= ids
    assert not any("TestSerialization" in i for i in ids)


@pytest.mark.parametrize("case_id, cls, args", [
    ("linear", nnq.Linear, dict(in_features=3, out_features=1)),
    ("linear_relu", nniq.LinearReLU, dict(in_features=3, out_features=1)),
    ("linear_dynamic-qint8", nnqd.Linear, dict(in_features=3, out_features=1)),
    ("linear_dynamic-float16", nnqd.Linear, dict(in_features=3, out_features=1)),
])
def test_linear_module_arguments(catalog, case_id, cls, args):
    module = {c.id: c for c in catalog}[case_id].build()
    assert type(module) is cls
    for name, value in args.items():
        assert getattr(module, name) == value
    dtype = torch.float16 if case_id.endswith("float16") else torch.qint8
    assert module._packed_params.dtype == dtype
    assert module.bias() is not None


@pytest.mark.parametrize("case_id, cls, bias", [
    ("conv2d", nnq.Conv2d, True), ("conv2d_nobias", nnq.Conv2d, False),
    ("conv2d_relu", nniq.ConvReLU2d, True), ("conv3d", nnq.Conv3d, True),
    ("conv3d_relu", nniq.ConvReLU3d, True),
])
def test_conv_module_arguments(catalog, case_id, cls, bias):
    module = {c.id: c for c in catalog}[case_id].build()
    dims = 3 if "3d" in case_id else 2
    assert type(module) is cls
    assert (module.in_channels, module.out_channels) == (3, 3)
    assert module.kernel_size == (3,) * dims and module.stride == (1,) * dims
    assert module.padding == (0,) * dims and module.dilation == (1,) * dims
    assert module.groups == 1 and module.padding_mode == "zeros"
    assert (module.bias() is not None) is bias


def test_inputs_are_pytorchs(catalog):
    by_id = {c.id: c for c in catalog}
    assert by_id["linear"].input == QuantizedInput((1, 3), 0.5, 2, "quint8")
    assert by_id["conv3d"].input.shape == (1, 3, 6, 6, 6)
    assert by_id["lstm"].input.shape == (4, 4, 3) and by_id["lstm"].state_dict_zipfile
    assert by_id["linear_relu_package_quantization_transforms"].input.dist == "randn"
    assert all(c.input.shape == (1, 3, 6, 6) for c in catalog if c.flow == "jit" and c.pytorch)
    lstm = by_id["lstm"].build().lstm
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (3, 7, 1)


def test_pytorch_engine_gates(catalog):
    gated = {c.id for c in catalog if c.pytorch and c.pytorch.fbgemm_only}
    assert gated == {"linear_dynamic-float16", "conv3d", "conv3d_relu", "lstm"}


def test_fixtures_and_kernels_are_not_installed_as_packages(tmp_path):
    dist = importlib.metadata.distribution("bc-harness")
    top_level = (dist.read_text("top_level.txt") or "").split()
    assert "fixtures" not in top_level and "kernels" not in top_level
    # from anywhere but the checkout, neither name imports; the compiled kernels live in harness
    probe = ("import importlib.util as u; print(u.find_spec('fixtures'), u.find_spec('kernels'), "
             "u.find_spec('harness._kernels') is not None)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None", "True"]


def test_loader_rejects_duplicate_ids_and_files_without_cases(tmp_path):
    body = textwrap.dedent("""
        from harness.catalog import Case, FloatInput
        CASES = [Case("same", lambda: None, FloatInput((1,)), ("state_dict",))]
    """)
    (tmp_path / "a.py").write_text(body)
    (tmp_path / "b.py").write_text(body)
    with pytest.raises(CatalogError, match="declared twice"):
        load_catalog(tmp_path)
    (tmp_path / "b.py").write_text("X = 1\n")
    with pytest.raises(CatalogError, match="no CASES"):
        load_catalog(tmp_path)
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope")


def test_bad_declarations_are_refused():
    from harness.catalog import Case, FloatInput

    with pytest.raises(ValueError, match="case id"):
        Case("Bad Id", lambda: None, FloatInput((1,)), ("state_dict",))
    with pytest.raises(ValueError, match="artifact kinds"):
        Case("ok", lambda: None, FloatInput((1,)), ("pickle",))


def test_selection_by_substring_and_glob(catalog):
    assert {c.id for c in select(catalog, ["linear_dynamic"])} == {"linear_dynamic-qint8", "linear_dynamic-float16"}
    assert {c.id for c in select(catalog, ["conv3d*"])} == {"conv3d", "conv3d_relu"}
    assert select(catalog, ["no-such-case"]) == []
    assert len(select(catalog, None)) == len(catalog)
    assert len([c for c in catalog if c.source == "bc_suite.py"]) == 20
    assert len([c for c in catalog if c.source == "eager_ptq.py"]) == 14


def test_eager_ptq_native_and_reference_share_float_weights(catalog):
    from harness.making import flows

    by_id = {c.id: c for c in catalog}
    for name in ("linear", "conv2d", "conv_transpose3d"):
        native, ref = flows.build(by_id[f"ptq-{name}"]), flows.build(by_id[f"ptq-{name}-ref"])
        assert torch.equal(native.conv.weight().dequantize(), ref.conv.get_quantized_weight().dequantize())
