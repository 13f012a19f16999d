"""The result cache (harness.replaying.cache): a second replay with nothing changed replays nothing,
and any change in what decides a result (one byte of a golden, one build id, one option) replays
exactly the units it touches. A unit that was replayed is one ``timings`` names."""

import dataclasses
import json
import os

import pytest

from harness.goldens.store import GoldenStore
from harness.replaying import cache as C
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store

from .conftest import FIXTURES

CASES = ["linear", "linear_dynamic-qint8", "lstm"]


@pytest.fixture
def cases(catalog):
    return [c for c in catalog if c.id in CASES]


def replay(store, cases, results_cache, **options):
    """(results as plain rows, the units replayed)."""
    timings = {}
    found = list(replay_store(GoldenStore(store), cases, Options(**{"patterns": CASES, **options}), timings=timings,
                              cache=results_cache))
    return [dataclasses.asdict(r) for r in found], {(u.version, u.case) for u in timings}


def fresh(tmp_path, **options):
    return C.ResultCache(tmp_path / "cache", C.context(Options(patterns=CASES, **options), FIXTURES))


def test_a_second_run_replays_nothing_and_gives_the_same_results(store, cases, tmp_path, version):
    first, replayed = replay(store, cases, fresh(tmp_path))
    assert {(version, c) for c in CASES} <= replayed
    again = fresh(tmp_path)
    second, replayed = replay(store, cases, again)
    assert replayed == set()
    assert second == first and again.hits == len(first)


def test_one_changed_byte_replays_that_unit_only(store, cases, tmp_path, version):
    before, _ = replay(store, cases, fresh(tmp_path))
    golden = store / version / "linear" / "state_dict.pt"
    data = bytearray(golden.read_bytes())
    data[-30] ^= 1
    golden.write_bytes(bytes(data))
    after, replayed = replay(store, cases, fresh(tmp_path))
    assert replayed == {(version, "linear")}
    changed = {(r["case"], r["artifact"]) for r in after if r not in before}
    assert changed and {case for case, _ in changed} == {"linear"}
    assert all(r["verdict"] == "corrupt" for r in after if (r["case"], r["artifact"]) == ("linear", "state_dict"))


def test_another_build_of_torch_or_a_library_replays_everything(store, cases, tmp_path, monkeypatch, version):
    _, every = replay(store, cases, fresh(tmp_path))
    real = C.builds()
    monkeypatch.setattr(C, "builds", lambda: {**real, "torch build": real["torch build"] + "+rebuilt"})
    _, replayed = replay(store, cases, fresh(tmp_path))
    assert replayed == every
    library = next(k for k in real if k not in ("torch", "torch build"))
    monkeypatch.setattr(C, "builds", lambda: {**real, library: ["another", "build"]})
    _, replayed = replay(store, cases, fresh(tmp_path))
    assert replayed == every


@pytest.mark.parametrize("option", [{"rounding_ulps": 0}, {"backends": ["fbgemm"]}, {"trust_unverified": True}])
def test_another_option_replays_everything(store, cases, tmp_path, version, option):
    _, every = replay(store, cases, fresh(tmp_path))
    _, replayed = replay(store, cases, fresh(tmp_path, **option), **option)
    assert replayed == every
    _, replayed = replay(store, cases, fresh(tmp_path, **option), **option)
    assert replayed == set()


def test_a_kernel_choosing_variable_or_another_catalog_changes_the_context(monkeypatch, tmp_path):
    options = Options(patterns=CASES)
    here = C.context(options, FIXTURES)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert C.context(options, FIXTURES) != here
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert C.context(options, FIXTURES) == here
    monkeypatch.setenv("BC_HARNESS_CACHE_DIR", str(tmp_path))  # where the cache is kept decides nothing
    assert C.context(options, FIXTURES) == here
    other = tmp_path / "fixtures"
    other.mkdir()
    (other / "cases.py").write_text("CASES = []\n")
    assert C.context(options, other) != here


def test_what_cannot_be_keyed_by_content_is_always_replayed(store, cases, tmp_path, version):
    os.mkfifo(store / version / "lstm" / "extra.pt")
    replay(store, cases, fresh(tmp_path))
    _, replayed = replay(store, cases, fresh(tmp_path))
    assert replayed == {(version, "lstm")}


def test_what_the_manifest_vouches_for_is_part_of_the_key(store, cases, tmp_path, version):
    """An attacker's edit of the sha256 the manifest records for one file: a fresh replay says
    corrupt, and so must a cached one (found by an attack on the cache)."""
    replay(store, cases, fresh(tmp_path))
    path = store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["linear/input.pt"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    cached, replayed = replay(store, cases, fresh(tmp_path))
    assert replayed == {(version, "linear")}
    assert {r["verdict"] for r in cached if r["case"] == "linear"} == {"corrupt"}


def test_an_owned_entry_naming_no_flow_gives_one_verdict_whatever_ran_first(store, cases, tmp_path, version):
    path = store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["cases"]["zz-owned"] = {"owner": "tests/test_x.py::test_y", "artifacts": ["scripted"],
                                     "flow": "no-such-flow", "backends": {"any": "not made"}}
    path.write_text(json.dumps(manifest))
    owned = [*CASES, "zz-owned"]
    uncached = [r for r in replay(store, cases, None, patterns=owned)[0] if r["case"] == "zz-owned"]
    replay(store, cases, fresh(tmp_path), patterns=owned)  # linear, lstm, ... kept: zz-owned runs first next time
    cached = [r for r in replay(store, cases, fresh(tmp_path), patterns=owned)[0] if r["case"] == "zz-owned"]
    assert cached == uncached and [r["verdict"] for r in cached] == ["corrupt"]
    manifest["cases"]["zz-owned"]["backends"] = {"any": "ok"}
    path.write_text(json.dumps(manifest))
    _, replayed = replay(store, cases, fresh(tmp_path), patterns=owned)
    assert (version, "zz-owned") in replayed


def test_a_tree_of_any_depth_or_a_linked_case_directory_is_replayed_never_a_traceback(store, cases, tmp_path,
                                                                                        version, request):
    deep, made = store / version / "lstm", []
    for _ in range(1200):  # deeper than Python's recursion limit
        deep = deep / "a"
        deep.mkdir()
        made.append(deep)
    request.addfinalizer(lambda: [d.rmdir() for d in reversed(made)])  # shutil.rmtree recurses: pytest's cannot
    outside = tmp_path / "outside"
    (store / version / "linear").rename(outside)
    (store / version / "linear").symlink_to(outside)
    rows, _ = replay(store, cases, fresh(tmp_path))
    assert {r["verdict"] for r in rows if r["case"] == "linear"} == {"corrupt"}
    again, replayed = replay(store, cases, fresh(tmp_path))
    assert (version, "linear") in replayed and (version, "lstm") not in replayed  # a tree of directories is content
    assert again == rows


def test_a_crash_the_machine_may_have_caused_is_not_kept_and_a_fault_is(tmp_path):
    from harness.replaying.results import Result

    kept = C.ResultCache(tmp_path, "context")
    crash = Result("linear", "scripted", "fbgemm", "2.13.0", "2.13.0", "crash", "the process replaying it died: ")
    for cause in ("no answer within 600 s (hung): stopped", "SIGKILL (signal 9)", "exit status 3"):
        kept.put("ab" * 32, [dataclasses.replace(crash, message=crash.message + cause)])
        assert kept.get("ab" * 32) is None, cause
    kept.put("ab" * 32, [dataclasses.replace(crash, message=crash.message + "SIGSEGV (signal 11)")])
    assert [r.verdict for r in kept.get("ab" * 32)] == ["crash"]
    kept.put("cd" * 32, [dataclasses.replace(crash, verdict="pass", message="")])
    assert [r.verdict for r in kept.get("cd" * 32)] == ["pass"]
    (tmp_path / "cd" / f"{'cd' * 32}.json").write_text('[{"case": 1, "verdict": "no such"}]')
    assert kept.get("cd" * 32) is None  # an unreadable entry is replayed, never an error


def test_the_command_keeps_results_unless_told_not_to_or_in_ci(store, tmp_path, monkeypatch, capsys):
    from harness.cli import main
    from harness.config import CI_VARIABLES

    monkeypatch.setenv("BC_HARNESS_CACHE_DIR", str(tmp_path / "kept"))
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    command = ["replay", "--goldens", str(store), "--fixtures", str(FIXTURES), "-k", "[l]inear", "-k", "[l]stm", "-q"]

    def run(*extra) -> str:
        assert main([*command, *extra]) == 0
        return capsys.readouterr().err

    assert "result cache" not in run()
    assert list((tmp_path / "kept").glob("??/*.json"))
    assert "from the result cache" in run()
    assert "result cache" not in run("--no-cache")
    monkeypatch.setenv("CI", "true")
    assert "result cache" not in run()
