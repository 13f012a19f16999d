"""The README's two set-up commands are the ones CI runs, its plugin example works, and the manual's
generated tables (docs/catalog.md, docs/reference.md) are current."""

import re

from .conftest import REPO


def _commands():
    return re.findall(r"```sh\n(python3 -m venv .*)\n```", (REPO / "README.md").read_text())


def test_readme_has_the_two_setup_commands_and_ci_runs_both():
    commands = _commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.endswith("bc-harness replay") and "torch==2.13.0" in main_job
    assert tests.endswith("pytest -n auto") and "torch==2.13.0" in tests and "[test]" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci
    assert main_job in ci  # CI adds -q after it: the same command, a shorter print


def test_readme_fixture_example_works(pytester, monkeypatch):
    from harness.pytest_plugin import CI_VARIABLES

    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    text = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", text[text.index("## The plugin in your own repository"):], re.S).group(1)
    assert len(example.strip().splitlines()) <= 13
    pytester.makeini("[pytest]\ngolden_dir = goldens\n")
    pytester.makepyfile(test_x=example)
    missing = pytester.runpytest()
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*pytest test_x.py::test_my_model --golden-update-new-only*"])
    pytester.runpytest("--golden-update-new-only").assert_outcomes(skipped=1)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_docs_catalog_is_generated_from_the_catalog(catalog):
    from harness.cli import catalog_markdown

    text = (REPO / "docs" / "catalog.md").read_text()
    block = text[text.index("<!-- catalog:start -->\n") + len("<!-- catalog:start -->\n"):text.index("<!-- catalog:end -->")]
    assert block == catalog_markdown(catalog), "docs/catalog.md is stale: paste `bc-harness cases --markdown`"


def test_docs_reference_table_covers_the_catalog_and_its_rows_are_measured(catalog):
    """Every case has one row of `bc-harness diff-backends --markdown`; rows the CPU cannot change
    (static cases, the cases without a reference) are measured again here and must be the same."""
    from harness.making.diffbackends import markdown

    text = (REPO / "docs" / "reference.md").read_text()
    section = text[text.index("## Reference distance, case by case"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*\|$", section, re.M)}
    assert sorted(rows) == sorted(c.id for c in catalog), "docs/reference.md's table is stale"
    by_id = {c.id: c for c in catalog}
    sample = [by_id[i] for i in ("linear", "conv2d", "jit-mlp", "per_tensor_observer", "default_qat_qconfig",
                                 "jit-conv_bn-fold", "ptq-linear")]
    fresh = markdown(sample, ["fbgemm", "x86", "qnnpack", "onednn"])
    for case in sample:
        assert f"{rows[case.id]}\n" in fresh, case.id
