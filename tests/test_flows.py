"""Every quantization flow and artifact kind: the catalog's coverage, the committed goldens, and
what a torch version that lacks a flow or kind does with it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from harness import stacks
from harness.catalog import ARTIFACT_KINDS
from harness.replaying.schedule import HarnessLayout, Options, Replayer
from harness.goldens.store import GoldenStore

from .conftest import REPO


def test_catalog_covers_every_flow_and_artifact_kind(catalog):
    flows = Counter(c.flow for c in catalog)
    kinds = Counter(k for c in catalog for k in c.artifacts)
    assert len(catalog) >= 60
    assert set(flows) == set(stacks.flow_names()) and all(flows[f] >= 2 for f in stacks.flow_names()), flows
    assert set(kinds) == set(ARTIFACT_KINDS), kinds
    # the lite and export kinds come from their own flows' cases, not only one each
    assert {c.flow for c in catalog if "lite" in c.artifacts} == {"jit", "ondevice"}
    assert {c.flow for c in catalog if "export" in c.artifacts} == {"pt2e", "torchao", "executorch"}
    assert {c.flow for c in catalog if "pte" in c.artifacts} == {"executorch"}


#: What torch 2.13.0 cannot make, each recorded in the manifest with its reason (README, known drifts)
GAPS_2_13 = {
    *{(c, "artifact", k) for c in ("dyn-embedding-4bit", "dyn-embedding_bag-4bit") for k in ("scripted", "traced")},
    *{(c, "backend", b) for c in ("dyn-gru-float16", "dyn-linear-float16", "dyn-lstm-float16",
                                   "linear_dynamic-float16") for b in ("qnnpack", "onednn")},
    *{(f"ptq-{m}-ref", "artifact", "scripted") for m in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                                         "conv_transpose2d", "conv_transpose3d")},
    ("ptq-conv_transpose3d", "backend", "qnnpack"),
    # torchao's 8da4w has no ExecuTorch kernels outside XNNPACK: no portable method
    *{(f"et-8da4w-{m}", "backend", "portable") for m in ("mlp", "lm")},
}


#: the torchao cases that torchao 0.18.0 (the 2.13.0 set's) cannot make on a CPU, and why
UNMAKEABLE_BY_TORCHAO_0_18 = {
    **{f"torchao-{m}-{r}-v1": "version 1 of" for m, r in (("mlp", "int8-weight-only"), ("block", "int8-weight-only"),
                                                          ("lm", "int8-weight-only"), ("mlp", "int8-dynamic"),
                                                          ("lm", "int8-dynamic"))},
    "torchao-mlp-float8-dynamic": "requires CUDA compute capability",
    "torchao-mlp-int4-weight-only-cpu": "Requires mslk",
}


def test_committed_2_13_goldens_hold_every_case_on_every_backend(catalog):
    """Nothing of the catalog is silently absent from the goldens of torch 2.13.0: every gap is a
    known one, and the manifest says why."""
    manifest = json.loads((REPO / "serialized" / "2.13.0" / "manifest.json").read_text())
    backends = ("fbgemm", "x86", "qnnpack", "onednn")
    gaps = set()
    for case in catalog:
        entry = manifest["cases"][case.id]
        if case.requires:  # torchvision does not import beside the CPU build that made this set
            assert entry["skipped"] == "needs torchvision, which is not installed", case.id
            continue
        if case.id in UNMAKEABLE_BY_TORCHAO_0_18:  # torchao's own reason, recorded
            assert UNMAKEABLE_BY_TORCHAO_0_18[case.id] in entry["skipped"], (case.id, entry["skipped"])
            continue
        assert not entry.get("skipped"), (case.id, entry.get("skipped"))
        for kind in case.artifacts:
            if kind not in entry["artifacts"]:
                assert entry["skipped_artifacts"][kind]
                gaps.add((case.id, "artifact", kind))
        for backend in ("any",) if case.backend_agnostic else stacks.case_backends(case, None, backends):
            if entry["backends"][backend] != "ok":
                assert entry["backends"][backend]
                gaps.add((case.id, "backend", backend))
    assert gaps == GAPS_2_13


def test_ondevice_golden_is_quantized_forward_and_forward_refuses(generated_store, catalog, version):
    """As PyTorch's on-device test says: after quantize_forward, only quantized_forward runs."""
    from harness.making.artifacts import KINDS
    from harness.goldens.safeload import load_weights

    root = generated_store / version
    case = next(c for c in catalog if c.id == "ondevice-linear")
    example = load_weights((root / "ondevice-linear/input.pt").read_bytes())
    lite = KINDS["lite"].load(case, (root / "ondevice-linear/lite.ptl").read_bytes(), example)
    golden = load_weights((root / "ondevice-linear/expected.fbgemm.pt").read_bytes())
    import torch

    assert torch.equal(lite.run_method("quantized_forward", example), golden)
    with pytest.raises(Exception):
        lite.run_method("forward", example)


def test_bundled_input_travels_in_the_lite_file(tmp_path, catalog):
    import torch

    from harness.making import flows
    from harness.making.artifacts import KINDS
    from harness.notices import quiet

    case = next(c for c in catalog if c.id == "ondevice-conv_linear-bundled")
    with quiet():
        example = flows.make_input(case)
        data = KINDS["lite"].save(case, flows.build(case), example)
        lite = KINDS["lite"].load(case, data, example)
    (bundled,) = lite.run_method("get_all_bundled_inputs")
    assert torch.equal(bundled[0], example)


def test_a_runtime_without_the_kind_skips_with_the_reason(generated_store, catalog, monkeypatch):
    """A torch that cannot read .pt2 files: every export result is a skip that says why."""
    import harness.compat as compat

    import harness.stacks.torch_ao.compat as stack_compat
    from harness.stacks import flow_problem

    monkeypatch.setattr(compat, "torch_release", lambda: "2.0.1")
    monkeypatch.setattr(stack_compat, "torch_release", lambda: "2.0.1")
    golden = GoldenStore(generated_store).open(next(iter(GoldenStore(generated_store).versions()[0])))
    case = next(c for c in catalog if c.id == "pt2e-ptq-linear")
    results = list(Replayer(HarnessLayout(golden), [case], Options()).run())
    assert results and {r.verdict for r in results} == {"skip"}
    assert all("torch.export archives (.pt2) need torch >= 2.1" in r.message for r in results)
    assert flow_problem("pt2e") == "pt2e (prepare_pt2e / convert_pt2e) needs torch >= 2.1"
    assert compat.kind_problem("lite") is None


def test_without_torchao_pt2e_is_skipped_with_the_reason_and_still_replays(generated_store, tmp_path, version):
    """torch >= 2.10 without torchao: PT2E goldens cannot be made (a recorded skip), but replay
    of existing .pt2 goldens needs no torchao."""
    script = f"""
import sys, json
sys.modules["torchao"] = None  # as if not installed
from harness.catalog import load_catalog
from harness.making.generate import generate_case
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.store import GoldenStore
case = next(c for c in load_catalog({str(REPO / 'fixtures')!r}) if c.id == "pt2e-ptq-linear")
made = generate_case(case)
results = list(replay_store(GoldenStore({str(generated_store)!r}), [case], Options(patterns=[case.id])))
print(json.dumps({{"skipped": made.entry.get("skipped"), "files": len(made.files),
                   "verdicts": sorted({{r.verdict for r in results}}), "n": len(results)}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    from harness.stacks.torch_ao.releases import PT2E_IN_TORCHAO
    from harness.versions import parse_version

    if parse_version(version) >= parse_version(PT2E_IN_TORCHAO):
        assert "needs torchao" in got["skipped"] and got["files"] == 0
    assert got["verdicts"] == ["pass"] and got["n"] == 4
