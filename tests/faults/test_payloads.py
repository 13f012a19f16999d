"""Crafted payloads inside real goldens of every code-carrying kind, vouched for by the manifest
(checksum and size updated, the sidecar too where a sidecar would show it) and not.

Each payload would create a marker file if it ran. None may run: replay gives ``corrupt`` with
the reason on one line, verify fails, ``pin`` refuses the file, and nothing in or outside the
store changes. The payloads are built from the goldens the session generated, so each is the
file a loader would really open, not a torch.save pickle renamed.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest

from harness.goldens.layout import sidecar_name
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.sealing import Refusal, pin, verify
from harness.goldens.store import GoldenStore, sha256
from harness.goldens.vetting import embedded_code

from ..conftest import SLICE, run_cli


class _Exec:
    """Unpickles to ``exec(code)``."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _touch(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def payload_pickle(marker, protocol: int = 2) -> bytes:
    return pickle.dumps(_Exec(_touch(marker)), protocol=protocol)


def rezip(data: bytes, change) -> bytes:
    """The archive with ``change(name, bytes) -> bytes or None`` applied to each member (None: as is)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            member = source.read(info.filename)
            changed = change(info.filename, member)
            target.writestr(info.filename, member if changed is None else changed)
    return out.getvalue()


def _package_pickle(marker):
    def change(name, member):
        return payload_pickle(marker, protocol=3) if name.endswith(".pkl") else None
    return change


def _package_source(marker):
    def change(name, member):
        return (_touch(marker) + "\n").encode() + member if name.endswith("fx_graph.py") else None
    return change


def _export_pickled_constant(marker):
    """A .pt2 whose payload config marks a weight pickled (use_pickle), and whose weight is a payload."""
    def change(name, member):
        if name.endswith("model_weights_config.json"):
            config = json.loads(member)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("/weights/weight_0"):
            return payload_pickle(marker, protocol=4)
        return None
    return change


def _torchscript_global(marker):
    def change(name, member):
        return payload_pickle(marker) if name.endswith(("/data.pkl", "/bytecode.pkl")) else None
    return change


#: (case, kind, how the payload is planted)
PAYLOADS = {
    "package-pickle": ("linear_relu_package_quantization_transforms", "package", _package_pickle),
    "package-interned-source": ("fx-mlp-ref", "package", _package_source),
    "export-pickled-constant": ("pt2e-ptq-linear", "export", _export_pickled_constant),
    "scripted-data-pkl": ("linear", "scripted", _torchscript_global),
    "traced-data-pkl": ("linear", "traced", _torchscript_global),
    "lite-bytecode-pkl": ("ondevice-linear", "lite", _torchscript_global),
}


def plant(store, version, case, kind, how, marker, *, vouched: bool) -> str:
    """Plant the payload; where ``vouched``, the manifest (and the sidecar) vouch for it too."""
    from harness.goldens.layout import file_name

    name = f"{case}/{file_name(kind)}"
    path = store / version / name
    crafted = rezip(path.read_bytes(), how(marker))
    path.write_bytes(crafted)
    if vouched:
        manifest_path = store / version / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][name] = {"sha256": sha256(crafted), "size": len(crafted)}
        try:  # the attacker updates the sidecar too, so it shows what the archive now carries
            text = embedded_code(kind, crafted).encode()
            (store / version / sidecar_name(name)).write_bytes(text)
            manifest["files"][sidecar_name(name)] = {"sha256": sha256(text), "size": len(text)}
        except Exception:
            pass
        manifest_path.write_text(json.dumps(manifest))
    return name


def _snapshot(root):
    return {p.relative_to(root.parent): p.read_bytes() if p.is_file() else None for p in sorted(root.parent.rglob("*"))}


@pytest.mark.parametrize("vouched", [True, False], ids=["vouched", "not-vouched"])
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_no_payload_runs_on_replay_or_verify(payload, vouched, store, catalog, version, tmp_path):
    case, kind, how = PAYLOADS[payload]
    marker = tmp_path / "payload-ran"
    name = plant(store, version, case, kind, how, marker, vouched=vouched)
    before = _snapshot(store)
    results = list(replay_store(GoldenStore(store), [c for c in catalog if c.id in SLICE], Options()))
    verified, findings = verify(store)
    assert not marker.exists(), "a payload ran"
    assert _snapshot(store) == before, "the store changed"
    hit = [r for r in results if (r.case, r.artifact) == (case, kind)]
    assert hit and {r.verdict for r in hit} == {"corrupt"}, [(r.backend, r.verdict, r.message) for r in hit]
    assert all("\n" not in r.message for r in hit)
    if vouched:
        assert "unsafe" in hit[0].message and "--trust-goldens" in hit[0].message, hit[0].message
    assert f"{version}/{name}" in {f.where for f in findings}, findings
    others = [r for r in results if (r.case, r.artifact) != (case, kind)]
    assert {r.verdict for r in others} <= {"pass", "skip"}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_pin_refuses_a_payload_and_lists_what_carries_code(payload, store, version, tmp_path):
    case, kind, how = PAYLOADS[payload]
    marker = tmp_path / "payload-ran"
    name = plant(store, version, case, kind, how, marker, vouched=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / f"TestSerialization.test_x.{kind}.pt").write_bytes((store / version / name).read_bytes())
    with pytest.raises(Refusal, match="not vouched for.*--trust-goldens"):
        pin(foreign, {"torch": version})
    assert sorted(p.name for p in foreign.iterdir()) == [f"TestSerialization.test_x.{kind}.pt"]  # nothing written
    out = run_cli("bc-harness", "pin", foreign, check=1)
    assert "nothing pinned" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()


def test_pin_lists_the_code_carrying_files_it_pins(store, version, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for kind in ("scripted", "state_dict"):
        (foreign / f"TestSerialization.test_x.{kind}.pt").write_bytes((store / version / f"linear/{kind}.pt").read_bytes())
    out = run_cli("bc-harness", "pin", foreign, check=0)
    assert "code-carrying, sidecar written: TestSerialization.test_x.scripted.pt" in out.stdout
    assert "pinned 3 files (1 carrying code)" in out.stdout
    assert (foreign / "TestSerialization.test_x.scripted.code.txt").read_text().startswith("# the code this scripted")


def test_trust_goldens_loads_code_beyond_the_allowlist_for_one_run(store, catalog, version):
    """A harmless out-of-allowlist global (a package source edited by a comment) is refused, and
    loaded with --trust-goldens: the flag is the user's word, per run."""
    case, kind = "fx-mlp-ref", "package"

    def change(name, member):
        return b"# an edit nobody reviewed\n" + member if name.endswith("fx_graph.py") else None

    plant(store, version, case, kind, lambda _marker: change, None, vouched=True)
    cases = [c for c in catalog if c.id == case]
    refused = [r.verdict for r in replay_store(GoldenStore(store), cases, Options()) if (r.case, r.artifact) == (case, kind)]
    trusted = [r.verdict for r in replay_store(GoldenStore(store), cases, Options(trust_goldens=True))
               if (r.case, r.artifact) == (case, kind)]
    assert set(refused) == {"corrupt"} and set(trusted) - {"skip"} == {"pass"}


def test_code_changed_without_its_sidecar_is_refused(store, catalog, version):
    """A reviewer reads the sidecar: an archive whose TorchScript code differs from it is refused."""
    name = "linear/scripted.pt"
    path = store / version / name

    def change(member_name, member):
        return member.replace(b"return", b"return ") if "/code/" in member_name and member_name.endswith(".py") else None

    crafted = rezip(path.read_bytes(), change)
    path.write_bytes(crafted)
    manifest_path = store / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = {"sha256": sha256(crafted), "size": len(crafted)}
    manifest_path.write_text(json.dumps(manifest))
    hit = [r for r in replay_store(GoldenStore(store), [c for c in catalog if c.id == "linear"], Options())
           if (r.case, r.artifact) == ("linear", "scripted")]
    assert {r.verdict for r in hit} == {"corrupt"} and "differs from its sidecar" in hit[0].message
