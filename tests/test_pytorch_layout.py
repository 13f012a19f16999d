"""Replaying a flat directory in PyTorch's own naming, judged as PyTorch's tests judge."""

import shutil

import pytest

from harness.compat import has_avx512_vnni
from harness.backends import supported_backends

from . import pytorch_suite_writer
from .conftest import by_key, records, run_cli

CODE = ("scripted", "traced", "package")


@pytest.fixture(scope="session")
def pytorch_dir_generated(tmp_path_factory):
    return pytorch_suite_writer.write(tmp_path_factory.mktemp("pytorch") / "serialized")


@pytest.fixture
def pytorch_dir(pytorch_dir_generated, tmp_path):
    target = tmp_path / "serialized"
    shutil.copytree(pytorch_dir_generated, target)
    return target


def test_writer_made_every_file_pytorch_names(pytorch_dir_generated):
    names = {p.name for p in pytorch_dir_generated.iterdir()}
    assert "TestSerialization.test_linear_dynamic_qint8.state_dict.pt" in names
    assert "TestSerialization.test_linear_relu_package_quantization_transforms.get_attr_targets.pt" in names
    assert "TestSerialization.test_conv2d_nobias_graph_v3.traced.pt" in names
    assert len(names) == 10 * 5 + 6 * 4 + 3 * 3 + 4  # _test_op, _test_op_graph, _test_obs, _test_package


def test_unpinned_directory_loads_data_but_refuses_code(pytorch_dir, tmp_path):
    report = tmp_path / "r.json"
    out = run_cli("bc-harness", "replay", "--layout", "pytorch", pytorch_dir, "--backend", "fbgemm",
                  "--json", report, check=1)
    recs = records(report)
    code = [r for r in recs if r["artifact"] in CODE]
    assert code and {r["verdict"] for r in code} == {"corrupt"}
    assert "carries code" in code[0]["message"]
    data = [r for r in recs if r["artifact"] == "state_dict" and r["case"] != "lstm"]
    assert {r["verdict"] for r in data} == {"pass"}
    assert "Traceback" not in out.stdout + out.stderr


def test_pinned_directory_replays_as_pytorchs_tests_would(pytorch_dir, tmp_path):
    run_cli("bc-harness", "pin", pytorch_dir, "--torch", "2.13.0", check=0)
    report = tmp_path / "r.json"
    proc = run_cli("bc-harness", "replay", "--layout", "pytorch", pytorch_dir, "--json", report)
    recs = records(report)
    by = by_key(recs)
    assert all(r["layout"] == "pytorch" and r["golden_version"] == "pytorch@2.13.0" for r in recs)
    # Every test of PyTorch's suite, every artifact, passes under fbgemm, the engine that made them,
    # but for test_lstm, which PyTorch itself skips on AVX512-VNNI CPUs.
    fbgemm = [r for r in recs if r["backend"] in ("fbgemm", "any")]
    assert {r["verdict"] for r in fbgemm if r["case"] != "lstm"} == {"pass"}
    lstm = by[("lstm", "state_dict", "fbgemm")]
    if has_avx512_vnni():
        assert lstm["verdict"] == "skip" and "AVX512-VNNI" in lstm["message"]
        assert lstm["message"].endswith("replayed anyway: pass")
    else:
        assert lstm["verdict"] == "pass"
    assert {r["pytorch_test"] for r in fbgemm} >= {"test_linear_dynamic", "test_lstm", "test_default_qat_qconfig",
                                                   "test_linear_relu_package_quantization_transforms"}
    assert by[("linear_dynamic-qint8", "scripted", "fbgemm")]["pytorch_test"] == "test_linear_dynamic"
    backends = supported_backends()
    if "qnnpack" in backends:
        # qnnpack ignores reduce_range: against PyTorch's only (fbgemm) expected output that is a drift.
        r = by[("linear_dynamic-qint8", "state_dict", "qnnpack")]
        assert r["verdict"] == "drift" and "assertEqual failed" in r["message"]
        assert r["max_abs_diff"] > 0
        # tests whose body runs only under fbgemm are skips elsewhere, with PyTorch's reason
        for case in ("linear_dynamic-float16", "conv3d", "lstm"):
            skip = by[(case, "scripted", "qnnpack")]
            assert skip["verdict"] == "skip" and "qengine_is_fbgemm" in skip["message"]
        assert proc.returncode == 1
    if "x86" in backends:
        assert by[("linear_dynamic-qint8", "state_dict", "x86")]["verdict"] == "pass"


def test_trust_unverified_is_the_explicit_way_around_a_missing_manifest(pytorch_dir, tmp_path):
    report = tmp_path / "r.json"
    run_cli("bc-harness", "replay", "--layout", "pytorch", pytorch_dir, "--backend", "fbgemm",
            "--trust-unverified", "--json", report, check=0)
    recs = records(report)
    assert {r["verdict"] for r in recs if r["case"] != "lstm"} == {"pass"}
    assert {r["verdict"] for r in recs} <= {"pass", "skip"}


def test_tampered_pinned_file_is_corrupt(pytorch_dir, tmp_path):
    run_cli("bc-harness", "pin", pytorch_dir, check=0)
    target = pytorch_dir / "TestSerialization.test_linear.scripted.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 1
    target.write_bytes(bytes(data))
    (pytorch_dir / "TestSerialization.test_conv2d.input.pt").unlink()
    report = tmp_path / "r.json"
    run_cli("bc-harness", "replay", "--layout", "pytorch", pytorch_dir, "--backend", "fbgemm",
            "-k", "linear", "-k", "conv2d", "--json", report, check=1)
    by = by_key(records(report))
    assert by[("linear", "scripted", "fbgemm")]["verdict"] == "corrupt"
    assert by[("linear", "traced", "fbgemm")]["verdict"] == "pass"
    assert by[("conv2d", "state_dict", "fbgemm")]["verdict"] == "missing"


def _as_an_older_torch_wrote_it(path):
    """Rewrite a zip-format state_dict so its pickle names ``torch._C.ScriptObject``, the name
    older torch releases gave the packed parameters of a quantized LSTM; weights_only=True
    refuses that global, though an unsafe load still reads the file."""
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"ctorch\nScriptObject\n" in body
                body = body.replace(b"ctorch\nScriptObject\n", b"ctorch._C\nScriptObject\n")
            target.writestr(info.filename, body)
    path.write_bytes(out.getvalue())


def test_a_machine_dependent_skip_covers_a_load_error_too(pytorch_dir, catalog, monkeypatch):
    """PyTorch skips test_lstm on AVX512-VNNI CPUs: there, the old state_dict's refusal by
    weights_only is information on a skipped result (a real finding), not a failure."""
    import harness.compat
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_pytorch_dir
    from harness.goldens.sealing import pin

    _as_an_older_torch_wrote_it(pytorch_dir / "TestSerialization.test_lstm.state_dict.pt")
    pin(pytorch_dir, {"torch": "1.13.1"})
    lstm = [c for c in catalog if c.id == "lstm"]

    def replay_on(vnni: bool):
        monkeypatch.setattr(harness.compat, "has_avx512_vnni", lambda: vnni)
        return {(r.artifact, r.backend): r for r in replay_pytorch_dir(pytorch_dir, lstm, Options(backends=["fbgemm"]))}

    skipped = replay_on(True)
    r = skipped[("state_dict", "fbgemm")]
    assert r.verdict == "skip" and not r.failed
    assert r.message.startswith("PyTorch skips test_lstm on AVX512-VNNI CPUs")
    assert "replayed anyway: load-error: UnpicklingError: weights_only load refused: Unsupported global: " \
           "GLOBAL torch._C.ScriptObject was not an allowed global by default" in r.message
    assert {x.verdict for x in skipped.values()} == {"skip"}
    assert skipped[("scripted", "fbgemm")].message.endswith("replayed anyway: pass")
    # the same file where PyTorch runs the test: the load error fails, as PyTorch's test would
    elsewhere = replay_on(False)
    assert elsewhere[("state_dict", "fbgemm")].verdict == "load-error" and elsewhere[("state_dict", "fbgemm")].failed
    assert elsewhere[("scripted", "fbgemm")].verdict == "pass"
