"""The bar for benchmarks/pytorch_layout.py: PyTorch's own replay logic on a flat directory of
its files, as test_backward_compatibility.py's TestSerialization does it, under every engine.

    python benchmarks/_pytorch_logic.py PYTORCH_DIR FIXTURES_DIR

For each of PyTorch's 19 tests (the catalog cases that name one), under each quantized engine
(the tests run under ``override_qengines``; the fbgemm-only bodies only under fbgemm, the
observer and QAT tests once): ``_test_op`` loads the input, loads the state_dict into a
freshly built module, ``torch.jit.load``s the scripted and traced files and compares each
output with the expected one; ``_test_op_graph`` does the TorchScript half; ``_test_obs``
loads an observer's state and compares; ``_test_package`` imports the package, re-runs
prepare_fx / calibrate / convert_fx and compares get_attr targets and outputs. The modules are
built by the catalog's build functions (PyTorch's constructors, as its tests call them). No
checksums, no vetting, no report: a comparison that fails raises.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from harness.catalog import load_catalog
from harness.compat import has_avx512_vnni


def equal(actual, expected, atol=None) -> None:
    """PyTorch's assertEqual, for what these tests return (tensors, quantized or not, tuples)."""
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            equal(a, e, atol)
        return
    if expected.is_quantized:
        actual, expected = actual.dequantize(), expected.dequantize()
    # assertEqual's float tolerance: rtol 1.3e-6, atol 1e-5 unless the test gives its own
    assert torch.allclose(actual, expected, rtol=1.3e-6, atol=1e-5 if atol is None else atol), "output differs"


def transforms(module, example):
    """_test_package's _do_quant_transforms."""
    from torch.ao.quantization import get_default_qconfig, quantize_fx

    prepared = quantize_fx.prepare_fx(module, {"": get_default_qconfig("fbgemm")}, example_inputs=(example,))
    prepared(example)
    return quantize_fx.convert_fx(prepared)


def run_test(case, directory: Path) -> None:
    stem = directory / case.pytorch.stem
    # as the tests call it; weights_only=False as before torch 2.6 (an LSTM state_dict holds a ScriptObject)
    load = lambda kind: torch.load(f"{stem}.{kind}.pt", weights_only=False)  # noqa: E731
    example = load("input")
    if case.artifacts == ("package",):
        expected, targets = load("expected"), load("get_attr_targets")
        model = torch.package.PackageImporter(f"{stem}.package.pt").load_pickle("test", "test.pkl")
        quantized = transforms(model, example)
        assert {n.target for n in quantized.graph.nodes if n.op == "get_attr"} == targets
        assert torch.allclose(quantized(example), expected)
        return
    if case.flow in ("observer", "qat"):
        torch.manual_seed(case.seed + 1)
        module = case.build()
        module.load_state_dict(load("state_dict"))
        if case.check_numerics:  # _test_obs: the observer returns its input
            equal(module(example), load("expected"))
        return
    expected = load("expected")
    if "state_dict" in case.artifacts:
        torch.manual_seed(case.seed + 1)
        module = case.build()
        module.load_state_dict(load("state_dict"))
        equal(module(example), expected)
    for kind in ("scripted", "traced"):
        equal(torch.jit.load(f"{stem}.{kind}.pt")(example), expected)


def main(directory: Path, fixtures: Path) -> int:
    warnings.simplefilter("ignore")
    tests = [c for c in load_catalog(fixtures) if c.pytorch is not None]
    runs, failed = 0, []
    for engine in [e for e in ("fbgemm", "x86", "qnnpack", "onednn") if e in torch.backends.quantized.supported_engines]:
        torch.backends.quantized.engine = engine
        for case in tests:
            if (case.pytorch.fbgemm_only and engine != "fbgemm") or (case.backend_agnostic and engine != "fbgemm"):
                continue
            if case.pytorch.skip_on_avx512_vnni and has_avx512_vnni():  # unittest.skipIf(IS_AVX512_VNNI_SUPPORTED)
                continue
            try:  # a failing test is reported, and the suite goes on, as unittest does
                run_test(case, directory)
            except AssertionError as exc:
                failed.append(f"{case.pytorch.stem} [{engine}]: {exc}")
            runs += 1
    print(f"{runs} test runs, {len(failed)} failed", *failed, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
