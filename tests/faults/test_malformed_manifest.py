"""A manifest is untrusted input too: a malformed entry spoils what it describes, never the run.

A case entry of the wrong shape makes that case corrupt; a file entry of the wrong shape makes
that file corrupt; a malformed machine fingerprint reads as an unrecorded machine. Every other
golden keeps its verdict, and nothing raises.
"""

import json

from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.store import GoldenStore

from ..conftest import SLICE, run_cli


def _edit(store, version, change):
    path = store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _replay(store, catalog):
    return {(r.case, r.artifact, r.backend): r
            for r in replay_store(GoldenStore(store), [c for c in catalog if c.id in SLICE], Options())}


def test_malformed_entries_spoil_only_what_they_describe(store, catalog, version):
    def change(manifest):
        manifest["cases"]["linear"]["backends"] = "all of them"
        manifest["files"]["lstm/scripted.pt"] = {"sha256": 12, "size": "big"}
        manifest["fingerprint"] = {"cpu_model": ["not", "text"], "isa": 5}

    _edit(store, version, change)
    by = _replay(store, catalog)
    linear = [r for r in by.values() if r.case == "linear"]
    assert linear and {r.verdict for r in linear} == {"corrupt"}
    assert "the manifest's entry for linear is malformed: its 'backends' has the wrong type" in linear[0].message
    scripted = by[("lstm", "scripted", "fbgemm")]
    assert scripted.verdict == "corrupt" and "manifest entry is malformed" in scripted.message
    assert by[("lstm", "traced", "fbgemm")].verdict in ("pass", "rounding")
    assert by[("per_tensor_observer", "state_dict", "any")].verdict == "pass"
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", "[l]inear", "-k", "[l]stm", check=1)
    assert "Traceback" not in out.stdout + out.stderr


def test_a_malformed_entry_of_a_case_gone_from_the_catalog_is_reported(store, catalog, version):
    _edit(store, version, lambda m: m["cases"].__setitem__("retired", ["not", "a", "table"]))
    retired = [r for r in _replay(store, catalog).values() if r.case == "retired"]
    assert [r.verdict for r in retired] == ["corrupt"] and "it is a list, not a table" in retired[0].message


def test_an_entry_naming_too_many_kinds_or_backends_or_odd_names_is_malformed(version):
    """A forged entry naming 3000 artifact kinds and 3000 backends made the plugin collect 9M items
    (9.5 GB) and the CLI promise millions of results; a name with control characters reached the
    terminal. Kinds and backends are short lowercase words, at most 32 of each."""
    import copy

    from harness.goldens.manifest import Manifest

    from ..conftest import REPO

    base = json.loads((REPO / "serialized" / version / "manifest.json").read_text())
    changes = (lambda e: e["artifacts"].extend(f"x{i}" for i in range(3000)),
               lambda e: e["backends"].update({f"b{i}": "ok" for i in range(40)}),
               lambda e: e["artifacts"].append("\x1b[2J"),
               lambda e: e["skipped_artifacts"].update({"a\nb": "why"}),
               lambda e: e.update(unrunnable={"scripted": {"q" * 100: "why"}}))
    for change in changes:
        manifest = copy.deepcopy(base)
        change(manifest["cases"]["linear"])
        parsed = Manifest.parse(json.dumps(manifest))
        assert "names more than 32 artifact kinds or backends" in parsed.cases["linear"].malformed
        assert parsed.cases["lstm"].malformed is None
