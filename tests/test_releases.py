"""harness.releases: the one list the matrix, the requirement and the installs come from."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from harness import releases
from harness.releases import ReleaseError

from .conftest import REPO


def fake_registry(*versions, empty=()):
    """A fetch standing in for PyPI's JSON API: each version with one file, ``empty`` with none."""
    data = {"releases": {**{v: [{"filename": f"torch-{v}.whl"}] for v in versions}, **{v: [] for v in empty}}}
    return lambda url: data


def test_pyproject_requirement_is_the_supported_range():
    text = (REPO / "pyproject.toml").read_text()
    spec = re.search(r'"torch([<>=!~][^"]*)"', text).group(1)
    assert releases.SpecifierSet(spec) == releases.SUPPORTED
    for admitted in ("1.13.1", "2.13.0", "2.14.1", "2.15.0"):
        assert admitted in releases.SUPPORTED
    assert "1.12.1" not in releases.SUPPORTED


def test_every_committed_golden_set_is_a_supported_release():
    sets = [p.name for p in (REPO / "serialized").iterdir() if p.is_dir() and p.name[0].isdigit()]
    assert releases.OLDEST == min(sets, key=releases.Version)
    assert all(v in releases.SUPPORTED for v in sets)


def test_registry_releases_keep_final_releases_with_files(monkeypatch):
    monkeypatch.delenv(releases.RELEASES_VARIABLE, raising=False)
    fetch = fake_registry("2.14.1", "2.9.0", "2.15.0", "2.16.0rc1", "2.13.0+cpu", "2.16.0.dev20261201",
                          empty=("2.17.0",))
    assert releases.registry_releases(fetch) == ["2.9.0", "2.14.1", "2.15.0"]
    assert releases.newest_release(fetch) == "2.15.0"
    assert releases.resolve("latest", fetch) == "2.15.0"


def test_the_releases_variable_answers_without_the_registry(monkeypatch):
    monkeypatch.setenv(releases.RELEASES_VARIABLE, "2.4.1, 2.0.1,junk,2.8.0")

    def offline(url):
        raise AssertionError("asked the registry")

    assert releases.registry_releases(offline) == ["2.0.1", "2.4.1", "2.8.0"]


def test_an_unreachable_registry_is_a_release_error(monkeypatch):
    monkeypatch.delenv(releases.RELEASES_VARIABLE, raising=False)
    with pytest.raises(ReleaseError, match="cannot ask the registry"):
        releases.registry_releases(lambda url: releases._fetch_json("http://127.0.0.1:9/nothing"))


def test_rows_resolve_to_their_torch():
    assert releases.resolve("oldest") == releases.OLDEST
    assert releases.resolve("torch213") == "2.13.0"
    # torchao's own axis: torch 2.13.0 with torchao 0.17.0, named as its golden set is
    assert releases.resolve("torch213-torchao017") == "2.13.0+torchao.0.17.0"
    assert releases.pip_args("2.13.0+torchao.0.17.0", index="registry") == [
        "torch==2.13.0", "safetensors>=0.4", "numpy>=1.26", "executorch==1.5.1", "flatbuffers>=24", "ruamel.yaml>=0.17",
        "pyyaml>=6", "torchao==0.17.0"]
    # ExecuTorch's axis: torch 2.13.0 with ExecuTorch 1.4.1 (installed alone: harness.releases.installs)
    assert releases.resolve("torch213-executorch141") == "2.13.0+executorch.1.4.1"
    assert "executorch==1.4.1" in releases.pip_args("2.13.0+executorch.1.4.1")
    assert releases.wrong_torch("2.13.0+torchao.0.17.0", "2.13.0+cpu") is None
    assert releases.resolve("nightly") == "nightly"
    assert releases.resolve("2.15.0") == "2.15.0"
    with pytest.raises(ReleaseError, match="unknown row 'torch999x'"):
        releases.resolve("torch999x")


def test_matrix_covers_oldest_213_latest_and_nightly_in_shards():
    rows = releases.matrix(2)["include"]
    assert {(r["row"], r["shard"]) for r in rows} == {(n, k) for n in ("oldest", "torch213", "torch213-torchao017",
                                                                         "torch213-executorch141", "latest", "nightly")
                                                      for k in (1, 2)}
    assert [r["row"] for r in rows if r["optional"]] == ["nightly", "nightly"]


def test_pip_args_per_index_and_torchao_pair(monkeypatch):
    monkeypatch.delenv(releases.INDEX_VARIABLE, raising=False)
    assert releases.pip_args("1.13.1") == ["torch==1.13.1"]
    assert releases.pip_args("2.15.0") == ["torch==2.15.0", "torchao==0.18.0", "safetensors>=0.4", "numpy>=1.26"]
    cpu = releases.pip_args("2.4.1", "cpu")
    assert cpu[:4] == ["torch==2.4.1", "torchao==0.6.1", "--index-url", releases.CPU_INDEX] and releases.PYPI_SIMPLE in cpu
    monkeypatch.setenv(releases.INDEX_VARIABLE, "cpu")
    assert releases.CPU_INDEX in releases.pip_args("2.13.0")
    nightly = releases.pip_args("nightly")
    assert {"--pre", "--upgrade"} <= set(nightly) and releases.NIGHTLY_CPU_INDEX in nightly
    assert releases.pip_args("2.99.0")[1] == "torchao"  # newer than the table: the newest torchao
    monkeypatch.setenv(releases.INDEX_VARIABLE, "cuda")
    with pytest.raises(ReleaseError, match="choose cpu or registry"):
        releases.pip_args("2.13.0")


def test_torchao_and_torchvision_pairs():
    from harness.stacks.torchao.releases import TORCHAO, torchao_for

    assert torchao_for("2.9.1") is None and torchao_for("2.4.1") == "0.6.1"
    assert torchao_for("2.10.0") == "0.16.0"
    assert all(torchao_for(f"{minor}.0") for minor in TORCHAO)
    assert releases.pip_args("2.4.1") == ["torch==2.4.1", "torchao==0.6.1"]  # replay: no torchvision
    assert releases.pip_args("2.4.1", extras=True)[-1] == "torchvision==0.19.1"  # generation: with it
    assert releases.pip_args("2.9.1", extras=True) == ["torch==2.9.1"]  # no pair known: nothing guessed


def test_install_failure_is_recorded_as_not_installed(tmp_path, capsys):
    def failing_pip(cmd, **kw):
        assert "--pre" in cmd and releases.NIGHTLY_CPU_INDEX in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies torch\n")

    assert releases.install("nightly", tmp_path / "results", run=failing_pip) == releases.NOT_INSTALLED
    record = json.loads((tmp_path / "results" / "install-nightly.json").read_text())["not_installed"]
    assert record["row"] == "nightly" and "Could not find a version" in record["error"]
    assert "NOT INSTALLED (not a backward-compatibility result)" in capsys.readouterr().err


def pip_then_torch(version, seen=None):
    """A stand-in for subprocess.run: pip succeeds, and torch then reports ``version``."""
    def run(cmd, **kw):
        if seen is not None:
            seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, version + "\n" if cmd[1] == "-c" else "", "")
    return run


def test_install_runs_pip_with_the_rows_torch(tmp_path, monkeypatch):
    monkeypatch.delenv(releases.INDEX_VARIABLE, raising=False)
    seen = []
    run = pip_then_torch("2.15.0+cpu", seen)
    assert releases.install("latest", tmp_path, run=run, fetch=fake_registry("2.14.1", "2.15.0")) == 0
    assert "torch==2.15.0" in seen[0] and "torchao==0.18.0" in seen[0] and seen[0][:3] == [sys.executable, "-m", "pip"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("row, found, says", [
    ("nightly", "2.13.0+cpu", "asked for a nightly build, torch 2.13.0+cpu is installed"),
    ("2.15.0", "2.13.0", "asked for torch 2.15.0, torch 2.13.0 is installed"),
    ("2.15.0", "", "torch does not import after the install"),
])
def test_a_torch_other_than_the_rows_is_not_installed(tmp_path, row, found, says):
    """pip succeeds when an installed release already satisfies 'torch' (the nightly index
    unreachable, say): the replay would then run on another torch under the row's name."""
    assert releases.install(row, tmp_path, run=pip_then_torch(found)) == releases.NOT_INSTALLED
    assert says in json.loads((tmp_path / f"install-{row}.json").read_text())["not_installed"]["error"]


def test_a_nightly_build_is_accepted():
    assert releases.wrong_torch("nightly", "2.16.0.dev20261202+cpu") is None


def test_module_prints_the_matrix_as_json():
    out = subprocess.run([sys.executable, "-m", "harness.releases", "matrix", "--shards", "3"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert len(json.loads(out)["include"]) == 3 * len(releases.MATRIX)
