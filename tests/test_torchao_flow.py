"""The torchao flow and the torchvision cases: checkpoints of tensor subclasses, loaded only as
weights_only admits them, and cases that need a package this install lacks."""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import replace

import pytest
import torch

from harness.catalog import Case, FloatInput
from harness.goldens.store import GoldenStore

pytest.importorskip("torchao")  # in the test extra; the flow's cases need it


def _by_id(catalog, case_id):
    return next(c for c in catalog if c.id == case_id)


def _store_with(tmp_path, cases):
    from harness.compat import torch_release
    from harness.making.generate import generate_case, generation_info

    made = [generate_case(c) for c in cases]
    root = tmp_path / "serialized"
    GoldenStore(root).write(torch_release(), {g.case.id: g.entry for g in made},
                            {n: d for g in made for n, d in g.files.items()}, generation_info("tests"))
    return root, made


def test_catalog_lists_the_new_cases(catalog):
    ids = {c.id for c in catalog}
    assert {f"torchao-{m}-{r}" for m in ("mlp", "block")
            for r in ("int8-weight-only", "int8-dynamic", "int4-weight-only")} <= ids
    assert {"tv-ptq-mobilenet_v2", "tv-ptq-mobilenet_v3", "tv-ptq-shufflenet_v2", "tv-ptq-resnet",
            "tv-qat-mobilenet_v2", "tv-fx-mobilenet_v2"} <= ids
    assert all(c.requires == ("torchvision",) for c in catalog if c.id.startswith("tv-"))


def test_torchao_checkpoint_round_trips_through_the_store(tmp_path, catalog):
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store

    case = _by_id(catalog, "torchao-mlp-int8-dynamic")
    root, (made,) = _store_with(tmp_path, [case])
    assert made.entry.artifacts == ["state_dict", "export"] and made.entry.backends == {"any": "ok"}
    results = list(replay_store(GoldenStore(root), [case], Options()))
    verdicts = {(r.artifact, r.verdict) for r in results if r.artifact != "model"}
    assert verdicts == {("state_dict", "pass"), ("export", "pass")}
    # the reference (harness.stacks.torchao.reference) states the int8 arithmetic: torchao's int8
    # matmul, scaled after, differs from it by float rounding at most
    assert all(r.vs_reference_max_abs_diff is not None and r.vs_reference_max_abs_diff < 1e-5
               for r in results if r.artifact != "model")


def test_the_reference_names_the_tensor_subclass_it_has_no_rule_for():
    from harness import reference
    from harness.stacks.torchao.compat import quantize

    model = quantize(torch.nn.Sequential(torch.nn.Linear(32, 8)).eval(), "int8-dynamic")
    with pytest.raises(reference.Unsupported, match=r"0.weight is a \w+ \(a tensor subclass computing in torchao"):
        reference.reference_output(model, torch.randn(2, 32))


def _pickle_naming(module: str, name: str) -> bytes:
    """A torch.save-shaped zip whose data.pkl names ``module.name`` (never unpickled by the test)."""
    stream = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", stream)
        z.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.mark.parametrize("module, name, verdict, says", [
    # a class torchao used to have, which this torchao does not register: a load error, a finding
    ("torchao.dtypes.affine_quantized_tensor", "AffineQuantizedTensor", "load-error", "does not register"),
    # anything else outside torch's weights_only built-ins: refused as unsafe, nothing imported
    ("os", "system", "corrupt", "not on the allowlist"),
])
def test_a_checkpoint_naming_an_unregistered_class_is_never_unpickled(tmp_path, module, name, verdict, says):
    from harness.goldens.store import GoldenError

    GoldenStore(tmp_path).write("2.13.0", {"c": {}}, {"c/state_dict.pt": _pickle_naming(module, name)},
                                {"torch": "2.13.0"})
    with pytest.raises(GoldenError) as caught:
        GoldenStore(tmp_path).open("2.13.0").read("c/state_dict.pt", kind="state_dict")
    assert caught.value.verdict == verdict and says in str(caught.value)


def test_registered_torchao_classes_pass_vetting():
    from harness.stacks.torchao.compat import quantize, registered_safe_globals
    from harness.goldens.vetting import vet

    model = quantize(torch.nn.Sequential(torch.nn.Linear(32, 8)).eval(), "int8-weight-only")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    vet("state_dict", buffer.getvalue(), "ckpt")  # raises if refused
    assert any(n.startswith("torchao.") for n in registered_safe_globals())


def test_a_missing_requirement_is_a_skip_with_its_reason(tmp_path, catalog):
    from harness.stacks import build_problem
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store

    base = _by_id(catalog, "linear")
    needy = replace(base, requires=("no_such_package_for_bc_harness",))
    assert "needs no_such_package_for_bc_harness, which is not installed" in build_problem(needy)
    root, _ = _store_with(tmp_path, [base])
    results = list(replay_store(GoldenStore(root), [needy], Options()))
    state = [r for r in results if r.artifact == "state_dict"]
    assert state and all(r.verdict == "skip" and "no_such_package_for_bc_harness" in r.message for r in state)
    assert all(r.verdict == "pass" for r in results if r.artifact in ("scripted", "traced"))


def test_a_recipe_this_torchao_lacks_is_recorded_not_raised(monkeypatch):
    from harness.stacks.torchao import compat as compat_torchao
    from harness.making.generate import generate_case

    from harness.stacks.torchao.recipes import Part, Recipe

    monkeypatch.setitem(compat_torchao.RECIPES, "nothing", Recipe("nothing", (Part("NoSuchConfig"),)))
    case = Case("torchao-nothing", torch.nn.Linear.__call__, FloatInput((2, 32)), ("state_dict",), flow="torchao",
                backend_agnostic=True, transform=lambda m, x: compat_torchao.quantize(m, "nothing"))
    case = replace(case, build=lambda: torch.nn.Linear(32, 4))
    made = generate_case(case)
    assert "has no NoSuchConfig" in made.entry.skipped and not made.files
