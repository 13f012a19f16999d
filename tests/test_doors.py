"""The two doors onto one replay: ``bc-harness replay`` and the pytest plugin's ``--golden`` give
the same results, with the same messages, on the same golden store.

Compared on every committed golden set the running torch replays (forward-compatibility rows are
the CLI's alone: the plugin replays no golden newer than its torch), over a slice of the catalog
that reaches every kind of verdict the committed sets hold: passes and rounding, known drifts,
known load-errors (torchao checkpoints, .pt2 archives), known crashes on AVX512 CPUs, and skips; and
an ExecuTorch case under its own backends (the only case of the sets made for ExecuTorch alone)."""

import json

from .conftest import FIXTURES, REPO, run_cli

#: cases whose ids no other case's id contains (both doors select by substring)
CASES = ("dyn-embedding_bag-4bit", "conv2d-grouped_dilated_thin", "pt2e-ptq-linear", "torchao-block-int8-dynamic",
         "jit-mlp-dynamic-per_channel", "linear_relu_package_quantization_transforms", "ondevice-linear-per_channel",
         "conv2d_nobias_graph_v3", "linear_dynamic-float16", "et-static-pc-linear")
#: what a result says: the verdict, why, and what was measured (qnnpack's ConvTranspose3d, whose
#: cross-backend figures vary run to run, is not in the slice)
FIELDS = ("verdict", "message", "known", "max_abs_diff", "max_step_diff", "mismatched", "total", "max_ulp_diff",
          "vs_fbgemm_max_step_diff", "vs_reference_max_step_diff", "vs_reference_mismatched", "pytorch_test")


def _keyed(records, versions):
    return {(r["golden_version"], r["case"], r["artifact"], r["backend"]): {f: r[f] for f in FIELDS}
            for r in records if r["golden_version"] in versions}


def test_the_cli_and_the_plugin_judge_every_committed_set_alike(pytester, tmp_path, version):
    from harness.goldens.store import GoldenStore
    from harness.versions import parse_version

    store = REPO / "serialized"
    versions = {v for v in GoldenStore(store).versions()[0] if parse_version(v) <= parse_version(version)}
    cli_json = tmp_path / "cli.json"
    selection = [a for case in CASES for a in ("-k", case)]
    run_cli("bc-harness", "replay", "--goldens", store, "--fixtures", FIXTURES, "--json", cli_json, "-q",
            *selection, cwd=tmp_path)
    plugin_json = tmp_path / "plugin.json"
    plugin = pytester.runpytest_subprocess("--golden", f"--golden-dir={store}", f"--golden-fixtures={FIXTURES}",
                                           "-k", " or ".join(CASES), f"--golden-report={plugin_json}",
                                           "-p", "no:cacheprovider", "--golden-ci")
    assert plugin.ret in (0, 1), plugin.stdout.str()[-3000:]
    cli = _keyed(json.loads(cli_json.read_text()), versions)
    through_pytest = _keyed(json.loads(plugin_json.read_text()), versions)
    # every set ≤ the running torch holds some of the slice (a set gives no result for a case it never held)
    assert sorted(versions - {v for v, *_ in cli}) == [] and len(cli) > 300
    assert sorted(set(cli) ^ set(through_pytest)) == []
    assert {k: (cli[k], through_pytest[k]) for k in cli if cli[k] != through_pytest[k]} == {}
    assert {r["verdict"] for r in cli.values()} >= {"pass", "rounding", "drift", "load-error", "skip"}
