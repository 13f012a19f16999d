"""Sharding and parallel replay: every result exactly once, the same verdicts as a serial run."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.replaying.shard import Unit, assign, estimate, load_costs, parse_shard, pick

from .conftest import FIXTURES, REPO, SLICE, records, run_cli


def _committed_units() -> list[Unit]:
    """Every (version, case) unit of the committed store, from its costs file (no torch)."""
    return [Unit(*key.rsplit("/", 1)) for key in load_costs(REPO / "serialized")]


@pytest.mark.parametrize("text, parsed", [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, parsed):
    assert parse_shard(text) == parsed


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2", ""])
def test_parse_shard_refuses(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_committed_store_shards_are_a_partition_balanced_by_cost(n):
    units, costs = _committed_units(), load_costs(REPO / "serialized")
    assert len(units) > 300
    shards = [pick(units, costs, k, n) for k in range(1, n + 1)]
    assert sorted(u for s in shards for u in s) == sorted(units)  # union, and no unit twice
    for a in range(n):
        for b in range(a + 1, n):
            assert not set(shards[a]) & set(shards[b])
    # deterministic: the same inputs in any order give the same split
    shuffled = units[:]
    random.Random(n).shuffle(shuffled)
    assert [set(s) for s in assign(shuffled, costs, n)] == [set(s) for s in assign(units, costs, n)]
    # balanced: longest-processing-time-first is within the costliest unit of the mean
    cost = estimate(units, costs)
    loads = [sum(cost[u] for u in s) for s in shards]
    assert max(loads) - sum(loads) / n <= max(cost.values()) + 1e-9


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(["1.13.1", "2.0.1", "2.13.0", "weird"]), st.text(min_size=1, max_size=6)),
                       st.one_of(st.none(), st.floats(0, 100)), max_size=60),
       st.integers(1, 9))
def test_any_units_and_costs_partition(units_costs, n):
    units = [Unit(v, c) for v, c in units_costs]
    costs = {f"{u.version}/{u.case}": s for u, s in zip(units, units_costs.values()) if s is not None}
    shards = assign(units, costs, n)
    assert len(shards) == n and sorted(u for s in shards for u in s) == sorted(units)
    assert assign(list(reversed(units)), dict(reversed(costs.items())), n) == shards


def test_costs_file_errors_are_one_line(tmp_path):
    (tmp_path / "replay-costs.json").write_text("{oops")
    with pytest.raises(ValueError, match="unreadable"):
        load_costs(tmp_path)
    (tmp_path / "replay-costs.json").write_text(json.dumps({"seconds": {"2.13.0/x": -1}}))
    with pytest.raises(ValueError, match="not a costs file"):
        load_costs(tmp_path)
    assert load_costs(tmp_path / "nowhere") == {}


def _key(r):
    return r["golden_version"], r["case"], r["artifact"], r["backend"]


#: the catalog's cases that have goldens in the generated store (SLICE), and a few more
SLICE_CASES = [arg for pattern in ("linear", "conv2d_graph", "lstm", "observer", "default_qat", "mlp")
               for arg in ("-k", pattern)]


def test_cli_shards_cover_every_result_once_and_merge_to_the_serial_report(store, tmp_path, version):
    run_cli("bc-harness", "replay", "--goldens", store, "-q", "-j", "1", "--record-costs", *SLICE_CASES,
            "--json", tmp_path / "serial.json")  # exit 1: the store holds goldens for SLICE only
    costs = load_costs(store)
    assert set(costs) >= {f"{version}/{c}" for c in SLICE}  # one recorded cost per (version, case)
    serial = records(tmp_path / "serial.json")
    for n in (2, 3):
        parts = []
        for k in range(1, n + 1):
            run_cli("bc-harness", "replay", "--goldens", store, "-q", "--shard", f"{k}/{n}", *SLICE_CASES,
                    "--json", tmp_path / f"{k}of{n}.json")
            parts.append(records(tmp_path / f"{k}of{n}.json"))
        assert all(parts), "a shard was empty"
        keys = [_key(r) for part in parts for r in part]
        assert len(keys) == len(set(keys)) and set(keys) == {_key(r) for r in serial}
        merged = {_key(r): r["verdict"] for part in parts for r in part}
        assert merged == {_key(r): r["verdict"] for r in serial}
        files = [tmp_path / f"{k}of{n}.json" for k in range(1, n + 1)]
        run_cli("bc-harness", "report", *files, "--md", tmp_path / f"merged{n}.md", check=0)
    run_cli("bc-harness", "report", tmp_path / "serial.json", "--md", tmp_path / "serial.md", check=0)
    assert (tmp_path / "merged3.md").read_text() == (tmp_path / "serial.md").read_text()


def test_parallel_replay_gives_the_serial_results(store, catalog):
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store
    from harness.goldens.store import GoldenStore

    cases = [c for c in catalog if c.id in SLICE]
    serial = [asdict(r) for r in replay_store(GoldenStore(store), cases, Options(), jobs=1)]
    timings = {}
    parallel = [asdict(r) for r in replay_store(GoldenStore(store), cases, Options(), jobs=2,
                                                  fixtures=FIXTURES, timings=timings)]
    # The same results and figures in the same order. Not the warnings: torch warns once per
    # process, so a warn-once warning lands on the first result each worker replays.
    without_warnings = lambda results: [{k: v for k, v in r.items() if k != "warnings"} for r in results]
    assert without_warnings(parallel) == without_warnings(serial)
    assert len(timings) == len(SLICE) and all(s > 0 for s in timings.values())


@pytest.mark.parametrize("args, says", [
    (["--shard", "3/2"], "needs 1 <= K <= N"),
    (["--shard", "half"], "is not K/N"),
    (["-j", "0"], "at least 1"),
    (["--shard", "1/2", "--record-costs"], "--shard and --record-costs conflict"),
    (["--layout", "pytorch", "--shard", "1/2", "fixtures"], "--shard and --layout pytorch conflict"),
])
def test_bad_shard_and_jobs_are_usage_errors(args, says):
    out = run_cli("bc-harness", "replay", *args, check=2)
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1
