"""What ``bc-harness replay`` prints: an overview a person reads, failures first, known ones folded."""

from harness.reporting.console import attention, overview, render
from harness.reporting import markdown_row as _row
from harness.reporting.report import Report
from harness.replaying.results import Result


def _results(known_copies: int = 1, drifts: int = 0) -> list[Result]:
    out = []
    for i in range(known_copies):
        for backend in ("fbgemm", "x86", "qnnpack", "onednn"):
            out.append(Result(f"emb-{i}", "state_dict", backend, "2.4.1", "2.13.0", "drift", "shape (6, 12) became (5, 12)",
                              known="EmbeddingBag ignored include_last_offset up to 2.4.1"))
            out.append(Result(f"pt2e-{i}", "export", backend, "2.4.1", "2.13.0", "load-error", "schema 5.3",
                              known=".pt2 archives of 2.4.1 do not load in 2.13.0"))
            out.append(Result(f"lin-{i}", "scripted", backend, "2.13.0", "2.13.0", "pass"))
            out.append(Result(f"fp16-{i}", "traced", backend, "2.13.0", "2.13.0", "skip", f"{backend} has no fp16 kernel"))
    for i in range(drifts):
        out.append(Result("conv2d", "traced", "fbgemm", "2.8.0", "2.13.0", "drift", f"output: {i + 1} of 9 elements differ",
                          max_step_diff=1.0))
    return out


def test_the_overview_counts_verdicts_per_golden_and_backend_and_marks_known_ones():
    text = overview(_results())
    lines = text.splitlines()
    assert lines[0].split() == ["golden", "backend", "pass", "drift", "load-error", "skip"]
    assert lines[2].split() == ["2.4.1", "fbgemm", "1", "known", "1", "known"]
    assert lines[6].split() == ["2.13.0", "fbgemm", "1", "1"] and lines[7].split() == ["x86", "1", "1"]


def test_known_results_fold_to_one_line_per_entry_whatever_their_number():
    few, many = render(_results(1), every_row=False, quiet=False, elapsed=1.0), \
        render(_results(50), every_row=False, quiet=False, elapsed=1.0)
    assert len(few.splitlines()) == len(many.splitlines())
    assert "Needs attention: nothing unexplained." in many
    assert "Known, examined and not failing (known-drifts.toml): 400 results, 2 entries:" in many
    folded = [line for line in many.splitlines() if "goldens 2.4.1" in line]
    assert len(folded) == 2 and "emb-0, emb-1 +48" in folded[0] and folded[0].split()[:2] == ["drift", "200"]
    assert "Skipped: 200 results that cannot be judged here, for 4 reasons (-v lists them)" in many
    assert many.splitlines()[-1].startswith("OK: 800 results:")


def test_unexplained_results_come_before_the_known_ones_each_reason_once():
    lines = attention(_results(3, drifts=2))
    assert lines[0] == "Needs attention: 2 results fail the run (2 reasons):"
    assert lines[1].split()[:4] == ["drift", "2.8.0", "conv2d", "[traced]"]
    assert lines.index(next(line for line in lines if line.startswith("Known"))) == 3


def test_every_row_prints_the_table_and_every_reason():
    text = render(_results(2), every_row=True, quiet=False, elapsed=1.0)
    assert "golden    case" in text and text.count("has no fp16 kernel") == 8
    assert "Needs attention" not in text


def test_a_markdown_cell_keeps_its_bars():
    assert _row("drift", "|Δ| 0.0088") == "| drift | \\|Δ\\| 0.0088 |"


def test_the_html_report_opens_with_the_breaks_and_folds_the_long_lists(tmp_path):
    import json
    from dataclasses import asdict

    records = [asdict(r) for r in _results(2, drifts=1)]
    records[0]["warnings"] = ["DeprecationWarning: torch.ao.quantization is deprecated"]
    (tmp_path / "r.json").write_text(json.dumps(records))
    report = Report.load([tmp_path / "r.json"])
    page = report.html()
    assert page.index("Needs attention: 1 results nobody has explained") < page.index("Max Δ per case")
    assert page.index("Max Δ per case") < page.index("<details><summary><h2>Drifts")
    assert "<details><summary><h2>Matrix" in page and "<details><summary><h2>Warnings" in page
    assert "torch.ao.quantization is deprecated" in page
    md = report.markdown()
    assert "## Needs attention" in md and "**conv2d** drift, golden 2.8.0" in md and "## Warnings" in md
