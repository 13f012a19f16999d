"""torchao's releases as an axis of their own: labelled golden sets, what a set records of the
torchao that made it, sets made for some cases, and the reference for torchao's tensors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.goldens.store import GoldenStore
from harness.versions import parse_version, set_label, version_key

GOLDENS = __import__("pathlib").Path(__file__).resolve().parents[1] / "serialized"

pytest.importorskip("torchao")


def test_a_labelled_set_is_its_torch_release_and_sorts_after_it():
    names = ["2.14.1", "2.13.0+torchao.0.17.0", "2.4.1", "2.13.0", "2.13.0+torchao.0.9.0"]
    assert sorted(names, key=version_key) == ["2.4.1", "2.13.0", "2.13.0+torchao.0.9.0", "2.13.0+torchao.0.17.0",
                                              "2.14.1"]
    assert str(parse_version("2.13.0+torchao.0.17.0")) == "2.13.0"
    assert set_label("2.13.0+torchao.0.17.0") == "torchao.0.17.0" and set_label("2.13.0") is None
    assert parse_version("2.13.0+torchao.0.17.0") <= parse_version("2.13.0")  # not newer: no forward row


def test_the_torchao_stack_labels_a_release_that_does_not_pair_with_the_torch(monkeypatch):
    from harness.stacks.torchao import STACK

    monkeypatch.setattr(type(STACK), "versions", lambda self: {"torchao": "0.17.0"})
    assert STACK.set_label("2.13.0") == "torchao.0.17.0"  # 0.18.0 pairs with 2.13
    assert STACK.set_label("2.12.0") is None
    monkeypatch.setattr(type(STACK), "versions", lambda self: {})
    assert STACK.set_label("2.13.0") is None


def test_the_committed_sets_record_the_torchao_that_made_each_case():
    labelled = json.loads((GOLDENS / "2.13.0+torchao.0.17.0" / "manifest.json").read_text())
    assert labelled["torch"] == "2.13.0" and labelled["label"] == "torchao.0.17.0"
    entry = labelled["cases"]["torchao-mlp-int8-weight-only"]["made_with"]
    # 0.17.0's default config version is 1: what broke for users on 0.18.0
    assert entry["torchao"] == "0.17.0" and entry["config"] == "Int8WeightOnlyConfig version 1"
    own = json.loads((GOLDENS / "2.13.0" / "manifest.json").read_text())
    assert own["cases"]["torchao-mlp-8da4w"]["made_with"]["config"] == "Int8DynamicActivationIntxWeightConfig version 2"


def test_a_manifest_moved_to_another_label_is_refused(tmp_path):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(GOLDENS / "2.13.0+torchao.0.17.0", root / "2.13.0+torchao.0.16.0")
    golden = GoldenStore(root).open("2.13.0+torchao.0.16.0")
    assert golden.manifest_error and "2.13.0+torchao.0.17.0" in golden.manifest_error


def test_a_set_made_for_some_cases_gives_no_result_for_the_others(tmp_path, catalog):
    """The 2.10.0 set was made for torchao's cases alone: the others are absent from it, not skips;
    the running torch's own set still reports a case it lacks as missing."""
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store

    cases = [c for c in catalog if c.id in ("linear", "torchao-mlp-int4-weight-only")]
    asked = Options(versions=["2.10.0"], patterns=["linear", "torchao-mlp-int4-weight-only"])
    results = list(replay_store(GoldenStore(GOLDENS), cases, asked))
    assert {r.case for r in results} == {"torchao-mlp-int4-weight-only"}
    import shutil

    root = tmp_path / "store"
    shutil.copytree(GOLDENS / "2.10.0", root / "2.10.0")
    from harness.stacks import own_set

    own = own_set()
    (root / own).mkdir()
    from harness.making.generate import generation_info

    GoldenStore(root).write(own, {}, {}, generation_info("tests"))
    found = list(replay_store(GoldenStore(root), cases[:1], Options(patterns=["linear"])))
    assert {(r.golden_version, r.verdict) for r in found} == {(own, "missing")}


# --- the reference for torchao's tensors --------------------------------------------------------

def _torchao_per_token(x, symmetric):
    from torchao.quantization.quant_primitives import (MappingType, choose_qparams_affine, dequantize_affine,
                                                       quantize_affine)

    block = [1] * (x.dim() - 1) + [x.shape[-1]]
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    scale, zero = choose_qparams_affine(x, mapping, block, torch.int8, quant_min=-128, quant_max=127,
                                        zero_point_dtype=torch.int8)
    q = quantize_affine(x, block, scale, zero, torch.int8, quant_min=-128, quant_max=127)
    return dequantize_affine(q, block, scale, zero, torch.int8, quant_min=-128, quant_max=127)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1e-3, 1.0, 40.0]), st.booleans(), st.booleans())
def test_per_token_quantization_is_torchaos_qparams_rule(seed, spread, symmetric, positive):
    """harness.stacks.torchao.reference's statement of dynamic activation quantization gives
    torchao's own choose_qparams_affine / quantize_affine / dequantize_affine, bit for bit."""
    from harness.stacks.torchao.reference import per_token

    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(seed)) * spread
    x = x.abs() if positive else x
    ours = per_token(x, "int8_sym_per_token" if symmetric else "int8_asym_per_token")
    assert torch.equal(ours, _torchao_per_token(x, symmetric))


@pytest.mark.parametrize("recipe, exact", [("int4-weight-only", True), ("intx-int2-g32-asym", True),
                                           ("intx-int8-pc-symm", True), ("8da4w", True), ("8da8w-pc", True),
                                           ("float8-weight-only", True), ("emb-int4-8da4w", True),
                                           ("int8-weight-only", False), ("int8-dynamic", False)])
def test_the_reference_computes_what_torchao_computes(recipe, exact):
    """The decomposed formats (torchao dequantizes and calls linear) match exactly; Int8Tensor's int8
    matmul, its scales applied after, within float rounding."""
    from harness.stacks.torchao import compat
    from harness.stacks.torchao.reference import reference_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(128, 64), torch.nn.Linear(64, 96), torch.nn.ReLU(),
                                torch.nn.Linear(96, 32)).eval()
    compat.quantize(model, recipe)
    tokens = torch.randint(0, 128, (2, 7))
    with torch.no_grad():
        theirs, ours = model(tokens), reference_model(model)(tokens)
    assert all(type(p) in (torch.Tensor, torch.nn.Parameter) for p in reference_model(model).parameters())
    if exact:
        assert torch.equal(theirs, ours)
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_the_reference_names_a_layer_it_cannot_state():
    from harness.reference import Unsupported
    from harness.stacks.torchao.reference import reference_model

    class Odd(torch.Tensor):
        def __deepcopy__(self, memo):
            return torch.Tensor._make_subclass(Odd, self.detach().clone())

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    model[0].weight = torch.nn.Parameter(torch.randn(4, 4).as_subclass(Odd), requires_grad=False)
    with pytest.raises(Unsupported, match=r"^0: a Odd weight"):
        reference_model(model)


@pytest.mark.parametrize("name", ["v2.13.0", "2.13.0+TORCHAO.0.17.0", "2.13.0+torchao-0.17.0", "2.13.0\n", "2.13.00"])
def test_a_set_name_not_in_normal_form_is_a_stray_directory(tmp_path, name):
    """Two directories must never be one set, nor a set hide under another spelling of the running
    install's own (where a case it lacks is missing, elsewhere absent)."""
    (tmp_path / name).mkdir()
    (tmp_path / "2.13.0").mkdir()
    assert GoldenStore(tmp_path).versions() == (["2.13.0"], [name])


def test_bisect_reads_no_release_a_manifest_forged(tmp_path):
    """A golden's recorded torchao release becomes a pip requirement only when it is a version."""
    import shutil

    from harness.cli.bisect import _made_with

    root = tmp_path / "store"
    shutil.copytree(GOLDENS / "2.13.0+torchao.0.17.0", root / "2.13.0+torchao.0.17.0")
    manifest = root / "2.13.0+torchao.0.17.0" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["cases"]["torchao-mlp-int8-weight-only"]["made_with"]["torchao"] = "0.17.0 --index-url http://x"
    data["libraries"] = ["0.17.0"]
    manifest.write_text(json.dumps(data))
    assert _made_with(root, "2.13.0+torchao.0.17.0", "torchao-mlp-int8-weight-only", "torchao") == "0.17.0"  # the label
    data["label"] = "other.1"
    manifest.write_text(json.dumps(data))
    assert _made_with(root, "2.13.0+torchao.0.17.0", "torchao-mlp-int8-weight-only", "torchao") is None


def test_each_torchao_release_is_bisected_beside_the_torch_it_pairs_with():
    from harness.releases import pinned
    from harness.stacks.torchao.releases import pairs, torch_for

    assert torch_for("0.18.0", "2.13.0") == "2.13.0" and torch_for("0.17.0", "2.11.0") == "2.11.0"
    assert torch_for("0.13.0", "2.13.0") == "2.8.0" and torch_for("0.7.0", "2.13.0") == "2.5.1"
    assert torch_for("0.18.0", "2.10.0") is None  # 0.17 on needs torch >= 2.11
    assert torch_for("0.5.0", "2.13.0") is None  # older than any pair the harness knows
    assert pairs("0.16.0", "2.10.0") and not pairs("0.16.0", "2.11.0")
    assert pinned("2.8.0+torchao.0.13.0") == ("torchao", "0.13.0") and pinned("2.8.0") is None


def test_committed_sets_span_six_torchao_releases_each_recorded():
    """The torchao axis: every committed set says which torchao made it (in its header, or per case
    where a set grew on several), six releases across the v1 -> v2 change."""
    releases = set()
    for version in GoldenStore(GOLDENS).versions()[0]:
        manifest = json.loads((GOLDENS / version / "manifest.json").read_text())
        header = manifest.get("libraries", {}).get("torchao")
        per_case = {e["made_with"]["torchao"] for e in manifest["cases"].values()
                    if (e.get("made_with") or {}).get("torchao")}  # an ExecuTorch case records its own release
        recorded = per_case or {header}
        if version not in ("1.13.1", "2.0.1"):  # before torchao's cases
            assert None not in recorded, version
            releases |= recorded
    assert {"0.6.1", "0.12.0", "0.13.0", "0.16.0", "0.17.0", "0.18.0"} <= releases
