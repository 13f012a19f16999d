"""The committed goldens hold on any x86-64: replayed under each kernel dispatch torch can pick.

Hosted CI runners and users' laptops get other CPUs; ATEN_CPU_CAPABILITY makes this machine
dispatch as they would (the scalar DEFAULT kernels many runners and older CPUs get, AVX2, and
the machine's own). Float outputs may then round differently, by a few ulps: the verdict is
``rounding``, shown and not failing. Everything else must be what it is on the machine that made
the goldens: pass, a known (examined) drift or load error, or a skip with its reason. A quantized
output that moved between machines would be a drift and fail here.
"""

import pytest

from harness.catalog import ROUNDING_ULPS

from .conftest import SLICE, records, run_cli

#: cases of the running torch's set whose float outputs round differently under the default dispatch
ROUNDS = ("pt2e-qat-conv1d_bn", "pt2e-qat-conv2d_transpose_bn", "torchao-block-float8-weight-only",
          "torchao-block-int4-weight-only", "torchao-block-int8-weight-only")


def _replay_under(capability, tmp_path, *select):
    report = tmp_path / "replay.json"
    out = run_cli("bc-harness", "replay", "-q", "--no-forward", "--json", report, *select,
                  env={"ATEN_CPU_CAPABILITY": capability}, process=True)  # torch reads it at start-up
    return out, report


def test_the_running_torchs_goldens_hold_under_the_default_dispatch(tmp_path):
    """The README's tier: the running torch's own set under ATEN's plain kernels, the dispatch
    furthest from this machine's, for the session slice (every flow and artifact kind) and the
    cases that round there; every set under every dispatch is the nightly's (below)."""
    from harness.compat import torch_release

    select = [a for case in (*SLICE, *ROUNDS) for a in ("-k", f"[{case[0]}]{case[1:]}")]
    _check(*_replay_under("default", tmp_path, "--golden", torch_release(), *select), "default")


@pytest.mark.slow
@pytest.mark.parametrize("capability", [None, "default", "avx2"], ids=["own", "default", "avx2"])
def test_committed_goldens_hold_under_every_kernel_dispatch(capability, tmp_path):
    _check(*_replay_under(capability, tmp_path), capability)


def _check(out, report, capability):
    last = out.stdout.rstrip().splitlines()[-1]
    assert out.returncode == 0, f"{last}\n{out.stdout[-4000:]}"
    recs = records(report)
    unexplained = [r for r in recs if r["verdict"] not in ("pass", "rounding", "skip") and not r["known"]]
    assert not unexplained, unexplained[:3]
    rounding = [r for r in recs if r["verdict"] == "rounding"]
    assert all(r["max_step_diff"] is None and 0 < r["max_ulp_diff"] <= ROUNDING_ULPS for r in rounding)
    # every quantized output is exact in steps, wherever it replays (known drifts aside)
    assert not [r for r in recs if (r["max_step_diff"] or 0) > 0 and not r["known"]]
    if capability is not None and rounding:
        # the dispatch asked for is the one the results were obtained with, and they say so
        assert all(f"; {capability.upper()} kernels;" in r["runtime_machine"] for r in rounding if r["runtime_machine"])
    assert last.startswith("OK:")
