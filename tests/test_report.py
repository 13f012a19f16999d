"""bc-harness report: merging runs, first drifting runtime, bisect hints, and the page a person sees."""

import json
import shutil
import subprocess

import pytest

from harness.reporting.report import Report

from .conftest import run_cli


def rec(case, golden, runtime, backend="fbgemm", verdict="pass", steps=0.0, known=None, artifact="scripted",
        ref_steps=None):
    """One replay record; ``ref_steps``: its distance to the reference kernels (None: no reference)."""
    return {"case": case, "artifact": artifact, "backend": backend, "golden_version": golden,
            "runtime_version": runtime, "verdict": verdict, "message": f"{verdict} msg" if verdict != "pass" else "",
            "max_abs_diff": steps * 0.0625, "max_step_diff": steps, "mismatched": int(steps > 0), "total": 4,
            "known": known, "vs_reference_max_step_diff": ref_steps,
            "vs_reference_max_abs_diff": None if ref_steps is None else ref_steps * 0.0625,
            "vs_reference_mismatched": None if ref_steps is None else int(ref_steps > 0)}


@pytest.fixture
def runs(tmp_path):
    """Three runtime versions' results over two golden versions; conv drifts from runtime 2.13.0 on."""
    files = []
    for runtime in ("2.4.1", "2.8.0", "2.13.0"):
        records = []
        for golden in ("1.13.1", "2.4.1"):
            records.append(rec("linear", golden, runtime, ref_steps=0))
            records.append(rec("linear", golden, runtime, backend="qnnpack", ref_steps=1))
            drifting = runtime == "2.13.0" and golden == "2.4.1"
            records.append(rec("conv", golden, runtime, verdict="drift" if drifting else "pass", steps=3 if drifting else 0,
                               ref_steps=3 if drifting else 0))
            records.append(rec("lstm", golden, runtime, backend="onednn", verdict="drift", steps=0,
                               known="ulp-level, examined"))
        path = tmp_path / f"replay-{runtime}.json"
        path.write_text(json.dumps(records))
        files.append(path)
    return files


def test_the_heatmap_has_a_reference_column_per_case(runs):
    """Per golden row and backend, the largest distance to the reference over the row's runtimes:
    exact, within one step, further (conv drifted 3 steps from the reference on 2.13.0), or none."""
    from harness.reporting.heatmap import heatmap

    report = Report.load(runs)
    linear, conv, lstm = (heatmap(report, case) for case in ("linear", "conv", "lstm"))
    assert ">ref</text>" in linear
    assert "fbgemm vs reference: bit-exact to the reference" in linear
    assert "qnnpack vs reference: within 1 step of the reference" in linear
    assert "fbgemm vs reference: up to 3 steps from the reference" in conv  # golden 2.4.1's row
    assert "fbgemm vs reference: bit-exact to the reference" in conv  # golden 1.13.1's row
    assert "onednn vs reference: no reference output for this case" in lstm


def test_drifts_name_first_runtime_and_bisect_pair(runs):
    report = Report.load(runs)
    assert report.runtimes == ["2.4.1", "2.8.0", "2.13.0"] and report.goldens == ["1.13.1", "2.4.1"]
    drifts = {(d["case"], d["golden"], d["backend"]): d for d in report.drifts()}
    conv = drifts[("conv", "2.4.1", "fbgemm")]
    assert conv["first_runtime"] == "2.13.0" and conv["bisect"] == ("2.8.0", "2.13.0") and not conv["known"]
    assert conv["figure"] == "3 st"
    lstm = drifts[("lstm", "1.13.1", "onednn")]
    assert lstm["known"] and lstm["first_runtime"] == "2.4.1" and lstm["bisect"] is None
    assert ("conv", "1.13.1", "fbgemm") not in drifts


def test_later_file_wins_and_counts(runs, tmp_path):
    fixed = tmp_path / "rerun.json"
    fixed.write_text(json.dumps([rec("conv", "2.4.1", "2.13.0")]))
    report = Report.load([*runs, fixed])
    assert not [d for d in report.drifts() if d["case"] == "conv"]
    assert report.counts()[("2.4.1", "2.13.0")]["pass"] == 3


def test_markdown_lists_drifts_with_hints(runs):
    md = Report.load(runs).markdown()
    assert "**conv**, golden 2.4.1, fbgemm: first on runtime 2.13.0, 3 st; passes on 2.8.0, drifts on 2.13.0" in md
    assert "**lstm**, golden 1.13.1, onednn (known)" in md
    assert "| 2.4.1 | 2.13.0 |" in md


def test_html_is_self_contained(runs):
    page = Report.load(runs).html()
    assert "<svg" in page and "passes on 2.8.0, drifts on 2.13.0" in page
    for needle in ("http://", "https://", "<script", "<link"):
        assert needle not in page.replace("http://www.w3.org/2000/svg", "")


def test_report_command(runs, tmp_path):
    out = run_cli("bc-harness", "report", *runs, "--html", tmp_path / "r.html", "--md", tmp_path / "r.md", check=0)
    assert "runtimes 2.4.1, 2.8.0, 2.13.0" in out.stdout and "1 not known" in out.stdout
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert run_cli("bc-harness", "report", tmp_path / "nope.json", "--md", tmp_path / "x.md", check=2)
    assert "--html FILE and/or --md FILE" in run_cli("bc-harness", "report", *runs, check=2).stderr


def test_rows_that_did_not_install_are_reported_apart(runs, tmp_path):
    results = runs[0].parent
    (results / "install-nightly.json").write_text(json.dumps(
        {"not_installed": {"row": "nightly", "torch": "nightly", "error": "pip exited 1: no matching distribution"}}))
    report = Report.load([*runs, results / "install-nightly.json"])
    assert report.not_installed == [{"row": "nightly", "torch": "nightly", "error": "pip exited 1: no matching distribution"}]
    assert "| nightly | nightly | pip exited 1: no matching distribution |" in report.markdown()
    assert "<h2>Rows not installed</h2>" in report.html()
    assert len(report.records) == len(Report.load(runs).records)  # the row that did not install adds no result
    out = run_cli("bc-harness", "report", results, "--md", tmp_path / "r.md", check=0)  # a directory: every file in it
    assert "row nightly (torch nightly) was not installed" in out.stderr and "runtimes 2.4.1, 2.8.0, 2.13.0" in out.stdout


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium (.ci/run installs Debian's chromium)")


def _headless(browser, profile, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1400,1600"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def test_the_page_in_headless_chromium_shows_the_drift(runs, tmp_path):
    from PIL import Image

    browser = _chromium()
    page = tmp_path / "report.html"
    page.write_text(Report.load(runs).html())
    dom = _headless(browser, tmp_path / "p1", "--dump-dom", page.as_uri()).stdout
    assert "Backward-compatibility report" in dom
    assert "passes on 2.8.0, drifts on 2.13.0" in dom and "conv heatmap" in dom
    # the breaks nobody explained, then the heatmaps; the long lists folded below them
    assert dom.index("Needs attention") < dom.index("Max Δ per case") < dom.index("<summary><h2>Drifts")
    assert "<details><summary><h2>Matrix" in dom
    shot = tmp_path / "shot.png"
    _headless(browser, tmp_path / "p2", f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 1600)
    colours = {c for _, c in image.getcolors(maxcolors=1 << 20)}
    near = lambda rgb: any(all(abs(a - b) <= 8 for a, b in zip(rgb, c)) for c in colours)
    assert near((0xc6, 0x28, 0x28)), "no drift red on screen"
    assert near((0x2e, 0x7d, 0x32)), "no pass green on screen"
    assert near((0xf9, 0xa8, 0x25)), "no known-drift amber on screen"
    assert near((0x1b, 0x5e, 0x20)), "no reference column (exact) on screen"


def test_forward_results_are_a_separate_informational_table(runs, tmp_path):
    newer = tmp_path / "forward.json"
    newer.write_text(json.dumps([rec("conv", "2.13.0", "2.4.1", verdict="load-error") | {"forward": True}]))
    report = Report.load([*runs, newer])
    assert "2.13.0" not in report.goldens and not [d for d in report.drifts() if d["golden"] == "2.13.0"]
    assert report.counts(forward=True)[("2.13.0", "2.4.1")]["load-error"] == 1
    assert "Forward compatibility (informational)" in report.html()
    assert "## Forward compatibility (informational)" in report.markdown()


def test_rounding_is_its_own_status_grouped_by_machine_pair(runs, tmp_path):
    def rounding(case, golden, ulps, machines):
        r = rec(case, golden, "2.13.0", verdict="rounding")
        r.update(max_step_diff=None, max_abs_diff=ulps * 6e-8, max_ulp_diff=ulps, mismatched=2, total=12,
                 golden_machine=machines[0], runtime_machine=machines[1])
        return r

    old, new = "machine not recorded (cpu_capability AVX2)", "AuthenticAMD EPYC; AVX2 kernels"
    here = "Intel; AVX512 kernels"
    extra = tmp_path / "rounding.json"
    extra.write_text(json.dumps([rounding("gru", "1.13.1", 2, (old, here)), rounding("gru", "2.4.1", 4, (new, here)),
                                 rounding("rnn", "2.4.1", 1, (new, here)), rounding("mlp", "2.4.1", 3, (None, None))]))
    report = Report.load([*runs, extra])
    assert report.counts()[("2.4.1", "2.13.0")]["rounding"] == 3
    assert report.cells[("gru", "2.4.1", "fbgemm", "2.13.0")].figure() == "4 ulp"
    assert not [d for d in report.drifts() if d["case"] in ("gru", "rnn", "mlp")]  # rounding is no drift
    md = report.markdown()
    assert "## Float rounding by machine pair (shown, not failing)" in md
    assert f"| {new} | {here} | 2.4.1 | 2.13.0 | 2 | 2 | 4 | 2.4e-07 |" in md
    assert f"| {old} | {here} | 1.13.1 | 2.13.0 | 1 | 1 | 2 |" in md
    assert "| the same machine | the same machine | 2.4.1 | 2.13.0 | 1 | 1 | 3 |" in md
    page = report.html()
    assert "<h2>Float rounding by machine pair</h2></summary>" in page and "AuthenticAMD EPYC" in page
