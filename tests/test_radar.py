"""The deprecation radar: warnings and load failures dated by release, per flow and artifact kind."""

import json
import re
import warnings

import pytest

from harness.notices import is_deprecation, message, quiet, runtime_warnings
from harness.reporting import radar
from harness.reporting.report import Report

DTYPES = ("UserWarning (deprecation): torch.quantize_per_tensor, torch.quantize_per_channel and other quantized "
          "tensor creation functions that produce tensors with dtype torch.quint8 ... are deprecated")
JIT = "DeprecationWarning: `torch.jit.load` is deprecated. Please switch to `torch.export`."


def rec(case, kind, runtime, verdict="pass", warns=(), golden="1.13.1", flow="eager", backend="fbgemm", **extra):
    return {"case": case, "artifact": kind, "backend": backend, "golden_version": golden, "runtime_version": runtime,
            "verdict": verdict, "warnings": list(warns), "flow": flow, "message": extra.pop("message", ""), **extra}


def timeline():
    """Three releases: 2.11.0 warns TorchScript's deprecation (already on the oldest replayed), 2.13.0
    adds the quantized dtypes' and stops loading one scripted golden; the state_dict never warns."""
    return [
        rec("a", "scripted", "2.12.1", warns=[JIT]), rec("a", "scripted", "2.11.0", warns=[JIT]),
        rec("a", "scripted", "2.13.0", "load-error", warns=[JIT, DTYPES], message="RuntimeError: unknown op"),
        rec("b", "scripted", "2.11.0"), rec("b", "scripted", "2.12.1"), rec("b", "scripted", "2.13.0", warns=[DTYPES]),
        rec("a", "state_dict", "2.11.0", warns=["UserWarning: qnnpack ignores reduce_range"]),
        rec("a", "state_dict", "2.12.1"), rec("a", "state_dict", "2.13.0", "drift"),
        # a golden that never loaded does not "stop loading"; a forward result is not backward evidence
        rec("c", "state_dict", "2.11.0", "load-error"), rec("c", "state_dict", "2.13.0", "load-error"),
        rec("d", "state_dict", "2.10.0", "load-error", golden="2.15.0", forward=True),
        rec("e", "state_dict", "2.10.0", "missing"),
        rec("*", "*", "2.13.0", "corrupt", backend="*"),
    ]


def test_each_notice_is_dated_by_the_first_release_that_raised_it():
    lines = {(line.flow, line.kind): line for line in radar.radar(timeline())}
    scripted = lines[("eager", "scripted")]
    assert scripted.releases == ["2.11.0", "2.12.1", "2.13.0"]
    assert scripted.notices == {message(JIT): "2.11.0", message(DTYPES): "2.13.0"}
    assert scripted.warns_from == "2.11.0" and scripted.dated(scripted.warns_from) == "≤ 2.11.0"
    assert scripted.dated("2.13.0") == "2.13.0"
    assert (scripted.stops_loading_at, scripted.stopped, scripted.replayed_at_stop) == ("2.13.0", 1, 2)
    assert "unknown op" in scripted.stop_reason
    state = lines[("eager", "state_dict")]
    assert state.warns_from is None and state.stops_loading_at is None  # c never loaded; a drifted, still loads
    assert state.loading() == "loads on 2.13.0"
    assert ("eager", "*") not in lines and all(line.releases[0] != "2.10.0" for line in lines.values())


def test_malformed_warnings_in_a_results_file_are_no_notices():
    odd = [rec("a", "scripted", "2.11.0", warns=[3, None, JIT]), {**rec("a", "scripted", "2.12.1"), "warnings": "x"}]
    [line] = radar.radar(odd)
    assert line.notices == {message(JIT): "2.11.0"}


def test_a_notice_new_in_a_release_is_a_finding_of_that_release():
    found = radar.new_notices(timeline())
    assert found == [("2.13.0", "2.12.1", "eager", "scripted", message(DTYPES))]


def test_the_merged_report_shows_the_radar_in_markdown_and_html(tmp_path):
    run = tmp_path / "runs.json"
    run.write_text(json.dumps(timeline()))
    report = Report.load([run])
    md = report.markdown()
    assert "## Deprecation radar" in md and "| eager | scripted | 2.11.0 … 2.13.0 | ≤ 2.11.0 | 2.13.0 (1 of 2 results) |" in md
    assert "- **2.13.0** (not on 2.12.1): eager scripted: torch.quantize_per_tensor" in md
    page = report.html()
    assert "<h2>Deprecation radar</h2>" in page and "New deprecation notices: 1" in page


def test_one_release_alone_dates_nothing_beyond_itself(tmp_path):
    run = tmp_path / "runs.json"
    run.write_text(json.dumps([rec("a", "scripted", "2.13.0", warns=[JIT + " " + "word " * 60])]))
    md = Report.load([run]).markdown()
    assert "| ≤ 2.13.0 |" in md and "Only 2.13.0 was replayed: no release before it to compare with." in md
    radar_cell = next(line for line in md.splitlines() if line.startswith("| eager | scripted |"))
    assert radar_cell.endswith("word … |")


def test_text_a_golden_raises_is_shown_literally_and_bounded(tmp_path, capsys):
    """A golden's code can raise any warning text: no HTML, links or terminal escapes of its making
    reach the Markdown report or the terminal, and a flood is cut to MAX_WARNINGS per result."""
    from harness.cli import main
    from harness.notices import MAX_WARNINGS

    with quiet() as caught:
        warnings.warn("\x1b[2K\u202eX is deprecated <img src=x onerror=alert(1)> [fix](https://evil.example) ![p](u)")
        for i in range(MAX_WARNINGS + 5):
            warnings.warn(f"flood {i}")
    lines = runtime_warnings(caught)
    assert len(lines) == MAX_WARNINGS + 1 and lines[-1] == "RuntimeWarning: 6 more distinct warnings, not kept"
    assert "\x1b" not in lines[0] and "\u202e" not in lines[0]
    (tmp_path / "replay-1.json").write_text(json.dumps([rec("a", "scripted", "2.12.1"),
                                                        rec("a", "scripted", "2.13.0", warns=lines[:1])]))
    assert main(["report", str(tmp_path), "--md", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    radar_part = md[md.index("## Deprecation radar"):md.index("## New deprecation notices") + 400]
    assert "<img" not in radar_part and "&lt;img" in radar_part
    assert not re.search(r"(?<!\\)\]\(", radar_part)  # every "](" escaped: no link of the golden's making
    assert "\x1b" not in capsys.readouterr().out


def test_a_results_file_of_the_wrong_shape_is_a_usage_error_not_a_traceback(tmp_path, capsys):
    from harness.cli import main

    for odd in ({"warnings": [3, None]}, {"warnings": 5}, {"flow": 7}, {"runtime_version": None}, {"artifact": None}):
        (tmp_path / "replay-x.json").write_text(json.dumps([{**rec("a", "scripted", "2.13.0"), **odd}]))
        assert main(["report", str(tmp_path), "--md", str(tmp_path / "r.md")]) == 2, odd
        assert "not a replay results file" in capsys.readouterr().err


def test_warnings_are_named_by_category_and_deprecations_told_by_text_too():
    import os

    with quiet() as caught:
        warnings.warn("x is deprecated and will be removed", UserWarning)
        warnings.warn("old", FutureWarning)
        warnings.warn("plain", UserWarning)
        os.write(2, b"[W1202 10:00:00.1 q.cpp:2] Warning: quint8 is deprecated (function op)\n")
    lines = runtime_warnings(caught)
    assert lines == ["UserWarning (deprecation): x is deprecated and will be removed", "FutureWarning: old",
                     "UserWarning: plain", "C++ warning (deprecation): quint8 is deprecated"]
    assert [is_deprecation(line) for line in lines] == [True, True, False, True]
    assert is_deprecation("torch.ao.quantization is deprecated")  # an older record's line, uncategorized
    assert message(lines[0]) == "x is deprecated and will be removed"


def test_the_report_command_names_each_new_notice_in_its_summary(tmp_path, capsys):
    from harness.cli import main

    (tmp_path / "replay-all.json").write_text(json.dumps(timeline()))
    assert main(["report", str(tmp_path), "--md", str(tmp_path / "r.md")]) == 0
    out = capsys.readouterr().out
    assert "new deprecation notice on 2.13.0 (not on 2.12.1): eager scripted: torch.quantize_per_tensor" in out
    assert "; 1 new deprecation notices;" in out


def test_a_deprecation_the_harness_itself_causes_fails_this_suite():
    """pyproject's filterwarnings: a DeprecationWarning attributed to a harness module is an error in
    this suite; one attributed to torch (the models' subject) is not."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("an API on its way out", DeprecationWarning, "harness/x.py", 1, module="harness.x")
    warnings.warn_explicit("an API on its way out", DeprecationWarning, "torch/x.py", 1, module="torch.x")
