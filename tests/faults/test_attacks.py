"""Goldens from anywhere: the attacks of someone who can commit to a golden directory, each built
from the goldens the session generated (not a renamed file) and vouched for by the manifest (and
the sidecar, where one would show the change).

Each is refused with a one-line reason under ``replay``, ``verify`` and ``pytest --golden``; no
marker file appears; nothing outside the temporary store changes; where the attack is on memory,
the refusal comes before the allocation. The same attacks trusted (``--trust-goldens``) show they
are real: the crafted file would have run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from harness.goldens.layout import file_name, sidecar_name
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.safeload import save_bytes
from harness.goldens.sealing import verify
from harness.goldens.store import GoldenStore, sha256
from harness.goldens.vetting import MAX_TENSOR_BYTES, embedded_code

from ..conftest import FIXTURES, REPO, SLICE
from .test_payloads import rezip


def vouch(store, version, name, data, kind=None):
    """Write ``data`` at ``name`` and make the manifest (and the sidecar) vouch for it."""
    (store / version / name).write_bytes(data)
    path = store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = {"sha256": sha256(data), "size": len(data)}
    if kind is not None:
        try:  # the attacker keeps the sidecar showing what the archive carries
            text = embedded_code(kind, data).encode()
            (store / version / sidecar_name(name)).write_bytes(text)
            manifest["files"][sidecar_name(name)] = {"sha256": sha256(text), "size": len(text)}
        except Exception:
            pass
    path.write_text(json.dumps(manifest))


def duplicated(data: bytes, pick, evil: bytes) -> bytes:
    """The archive with a second member named like the first member ``pick`` chooses, holding ``evil``."""
    import io
    import warnings
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: that is the attack
        chosen = next(i.filename for i in source.infolist() if pick(i.filename))
        target.writestr(chosen, evil)  # the copy a reader that takes the first finds
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


def _code_member(data: bytes, needle: str) -> str:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return next(n for n in archive.namelist() if "/code/" in n and n.endswith(".py")
                    and needle in archive.read(n).decode())


def _with_code(data: bytes, member: str, edit) -> bytes:
    return rezip(data, lambda name, body: edit(body.decode()).encode() if name == member else None)


def _save_in(method: str, marker):
    """An edit that makes TorchScript method ``method`` call torch.save on a path outside the store."""
    def edit(source: str) -> str:
        head = re.search(rf"  def {method}\(self[^)]*\)[^:]*:\n", source, re.S)
        body = source[head.end():]
        indent = re.match(r"\s*", body).group(0)
        return source[:head.end()] + f'{indent}torch.save(1, "{marker}")\n' + body
    return edit


# -- the attacks: (name, case, kind, plant(store, version, marker) -> the file planted) ------------

def _duplicate_package(store, version, marker):
    name = "linear_relu_package_quantization_transforms/package.pt"
    data = (store / version / name).read_bytes()
    from .test_payloads import payload_pickle

    vouch(store, version, name, duplicated(data, lambda n: n.endswith(".pkl"), payload_pickle(marker, 3)), "package")
    return name


def _duplicate_script(store, version, marker):
    name = "conv2d_graph/scripted.pt"
    data = (store / version / name).read_bytes()
    member = _code_member(data, "def forward")
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        clean = archive.read(member).decode()
    evil = _save_in("forward", marker)(clean).encode()
    vouch(store, version, name, duplicated(data, lambda n: n == member, evil), "scripted")
    return name


def _export_from_file(store, version, marker):
    name = "pt2e-ptq-linear/export.pt2"

    def change(member_name, body):
        if member_name.endswith("models/model.json"):
            text = body.decode()
            return re.sub(r'"target": "torch\.ops\.aten\.linear\.default"',
                          '"target": "torch.ops.aten.from_file.default"', text, count=1).encode()
        return None
    vouch(store, version, name, rezip((store / version / name).read_bytes(), change), "export")
    return name


def _scripted_save(method):
    def plant(store, version, marker):
        name = "linear/scripted.pt"
        data = (store / version / name).read_bytes()
        member = _code_member(data, f"def {method}")
        vouch(store, version, name, _with_code(data, member, _save_in(method, marker)), "scripted")
        return name
    return plant


def _lite_bytecode_save(store, version, marker):
    name = "ondevice-linear/lite.ptl"

    def change(member_name, body):
        if member_name.endswith("bytecode.pkl"):
            return body.replace(b"X\x0c\x00\x00\x00aten::linear", b"X\x0a\x00\x00\x00aten::save", 1)
        return None
    vouch(store, version, name, rezip((store / version / name).read_bytes(), change), "lite")
    return name


ATTACKS = {
    "duplicate-member-package": ("linear_relu_package_quantization_transforms", "package", _duplicate_package,
                                 "holds two members named"),
    "duplicate-member-scripted": ("conv2d_graph", "scripted", _duplicate_script, "holds two members named"),
    "export-from-file": ("pt2e-ptq-linear", "export", _export_from_file,
                         "calls aten::from_file, which touches files"),
    "scripted-forward-save": ("linear", "scripted", _scripted_save("forward"), "calls aten::save, which touches files"),
    "scripted-nested-method-save": ("linear", "scripted", _scripted_save("_weight_bias"),
                                    "calls aten::save, which touches files"),
    "lite-bytecode-save": ("ondevice-linear", "lite", _lite_bytecode_save, "calls aten::save, which touches files"),
}


def _outside(tmp_path, store):
    """Everything under tmp_path but the store, as bytes (what an attack must not change)."""
    return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and store not in p.parents}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_is_refused_by_replay_and_verify_and_runs_nothing(attack, store, catalog, version, tmp_path):
    case, kind, plant, reason = ATTACKS[attack]
    marker = tmp_path / "outside" / "attack-ran"
    marker.parent.mkdir()
    name = plant(store, version, marker)
    before = _outside(tmp_path, store)
    results = [r for r in replay_store(GoldenStore(store), [c for c in catalog if c.id in SLICE], Options(),
                                       fixtures=FIXTURES) if (r.case, r.artifact) == (case, kind)]
    assert results and {r.verdict for r in results} == {"corrupt"}, [(r.verdict, r.message) for r in results]
    assert all(reason in r.message and "\n" not in r.message for r in results), results[0].message
    _verified, findings = verify(store)
    assert any(f.where == f"{version}/{name}" and reason in f.problem for f in findings), findings
    assert not marker.exists() and _outside(tmp_path, store) == before


@pytest.mark.parametrize("attack", ["scripted-forward-save", "export-from-file", "duplicate-member-package"])
def test_the_attacks_are_real_trusted_they_run(attack, store, catalog, version, tmp_path):
    """Under --trust-goldens (allowlists waived; bounds and form still hold) the crafted file of an
    operator attack runs and writes its marker: the refusals above refuse something real. A
    duplicate member is refused even then: no reader can be trusted to pick the copy that was read."""
    case, kind, plant, reason = ATTACKS[attack]
    marker = tmp_path / "outside" / "attack-ran"
    marker.parent.mkdir()
    plant(store, version, marker)
    results = [r for r in replay_store(GoldenStore(store), [c for c in catalog if c.id == case],
                                       Options(trust_goldens=True, backends=["fbgemm"]), fixtures=FIXTURES)
               if (r.case, r.artifact) == (case, kind)]
    if attack.startswith("duplicate"):
        assert {r.verdict for r in results} == {"corrupt"} and not marker.exists()
    elif attack == "export-from-file":  # from_file reads a path: here a shared-memory name the program gives
        assert all(r.verdict != "corrupt" for r in results)
    else:
        assert marker.exists(), [(r.verdict, r.message) for r in results]


# -- memory: what a golden's tensors would need, refused before torch allocates ----------------------

TWICE = 2 * MAX_TENSOR_BYTES


def _expanded(nbytes: int):
    return torch.zeros(1).expand(nbytes // 4)  # float32: 4 bytes an element, one element stored


class _Padded(torch.nn.Module):
    def __init__(self, nbytes):
        super().__init__()
        self.register_buffer("pad", _expanded(nbytes))
        self.fc = torch.nn.Linear(5, 5)

    def forward(self, x):
        return self.fc(x)


def _memory_file(kind: str, example) -> bytes:
    """A golden of ``kind`` whose tensors need twice the bound at their logical sizes, a few KB on disk."""
    from harness.compat import lite_save

    model = _Padded(TWICE).eval()
    if kind in ("input", "state_dict"):
        return save_bytes(_expanded(TWICE) if kind == "input" else model.state_dict())
    if kind in ("scripted", "traced", "lite"):
        import io

        script = torch.jit.script(model) if kind != "traced" else torch.jit.trace(model, torch.zeros(2, 5))
        if kind == "lite":
            return lite_save(script)
        buffer = io.BytesIO()
        torch.jit.save(script, buffer)
        return buffer.getvalue()
    if kind == "package":
        import io

        buffer = io.BytesIO()
        with torch.package.PackageExporter(buffer) as exporter:
            exporter.extern(["torch", "torch.**"])
            exporter.save_pickle("model", "model.pkl", _expanded(TWICE))
        return buffer.getvalue()
    raise ValueError(kind)


def _export_meta_bomb(data: bytes) -> bytes:
    """The .pt2 with one raw weight's metadata claiming twice the bound (8 bytes an element)."""
    def change(name, body):
        if name.endswith("model_weights_config.json"):
            config = json.loads(body)
            first = next(iter(config["config"].values()))
            first["tensor_meta"]["sizes"] = [{"as_int": TWICE // 8}]
            first["tensor_meta"]["strides"] = [{"as_int": 0}]
            return json.dumps(config).encode()
        return None
    return rezip(data, change)


#: (kind, case, file) per artifact kind and for inputs
MEMORY = {"input": ("linear", "input.pt"), "state_dict": ("linear", "state_dict.pt"),
          "scripted": ("conv2d_graph", "scripted.pt"), "traced": ("conv2d_graph", "traced.pt"),
          "lite": ("ondevice-linear", "lite.ptl"), "package": ("linear_relu_package_quantization_transforms", "package.pt"),
          "export": ("pt2e-ptq-linear", "export.pt2")}


@pytest.mark.parametrize("kind", sorted(MEMORY))
def test_a_golden_that_would_need_twice_the_memory_bound_is_refused_before_loading(kind, store, catalog, version):
    from harness.goldens.vetting import vet

    case, file = MEMORY[kind]
    name = f"{case}/{file}"
    data = _export_meta_bomb((store / version / name).read_bytes()) if kind == "export" else _memory_file(kind, None)
    assert len(data) < 64 << 10  # a few kilobytes on disk
    with pytest.raises(Exception, match=r"would need 2 GiB for its tensors when loaded and run .* at most 1 GiB"):
        vet("data" if kind == "input" else kind, data, name, trusted=True)  # bounds hold even trusted
    vouch(store, version, name, data, None if kind in ("input", "state_dict") else kind)
    hit = [r for r in replay_store(GoldenStore(store), [c for c in catalog if c.id == case],
                                   Options(backends=["fbgemm"]), fixtures=FIXTURES)
           if r.case == case and (kind == "input" or r.artifact == kind)]
    assert hit and {r.verdict for r in hit} == {"corrupt"}, [(r.artifact, r.verdict, r.message) for r in hit]
    assert all("would need 2 GiB" in r.message for r in hit)


MEMO_BOMB = """
import os, sys
sys.path.insert(0, {repo!r})
from harness.goldens.pickles import Refused, pickle_globals
stream = b"\\x80\\x04N" + b"\\x94" * 16_000_000 + b"."
try:
    pickle_globals(stream, "data.pkl")
    print("read")
except Refused as exc:
    print("refused:", exc)
# VmHWM: this process image's peak (ru_maxrss would count the parent it was forked from)
print("peak", next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def test_a_memo_bomb_is_refused_with_bounded_memory_and_a_reason():
    """16M MEMOIZE opcodes (16 MB) took the vetting itself to 1.5 GB; now it stops at the opcode
    bound, and says so (an out-of-memory error would never read as an empty "corrupt")."""
    out = subprocess.run([sys.executable, "-c", MEMO_BOMB.format(repo=str(REPO))], capture_output=True, text=True,
                         timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused: data.pkl stores more than 200000 memo entries"), out
    peak_kib = int(lines[1].split()[1])
    assert peak_kib < 256 << 10, f"peak {peak_kib} KiB"  # the 16 MB stream and a bounded memo, not gigabytes


# -- files that are not files, and a store that is collected -----------------------------------------

def test_a_fifo_or_a_symlink_in_place_of_a_golden_is_refused_without_hanging(store, catalog, version, tmp_path):
    os.unlink(store / version / "linear" / "input.pt")
    os.mkfifo(store / version / "linear" / "input.pt")
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((store / version / "lstm" / "input.pt").read_bytes())
    os.unlink(store / version / "lstm" / "input.pt")
    os.symlink(outside, store / version / "lstm" / "input.pt")
    results = list(replay_store(GoldenStore(store), [c for c in catalog if c.id in ("linear", "lstm")],
                                Options(result_timeout=60), fixtures=FIXTURES))
    linear = {r.verdict: r.message for r in results if r.case == "linear"}
    lstm = {r.verdict: r.message for r in results if r.case == "lstm"}
    assert set(linear) == {"corrupt"} and "is not a regular file (a FIFO)" in linear["corrupt"], linear
    assert set(lstm) == {"corrupt"} and "is a symbolic link" in lstm["corrupt"], lstm
    out = subprocess.run([str(REPO / ".venv" / "bin" / "bc-harness") if (REPO / ".venv").is_dir() else "bc-harness",
                          "verify", str(store), "--fixtures", str(FIXTURES)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "a FIFO" in out.stdout and "symbolic link" in out.stdout, out.stdout


def test_a_conftest_in_a_golden_store_is_never_imported_and_is_refused(store, catalog, version, tmp_path, pytester,
                                                                       outside_ci):
    """A plain pytest run of the user's repository does not collect the store (the plugin ignores
    it), and replay, verify and pytest --golden refuse Python source inside it."""
    marker = tmp_path / "outside" / "conftest-ran"
    marker.parent.mkdir()
    project = pytester.path
    import shutil

    shutil.copytree(store, project / "goldens")
    planted = project / "goldens" / version / "linear" / "conftest.py"
    planted.write_text(f"open({str(marker)!r}, 'w').close()\n")
    (project / "goldens" / "test_sneaky.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                        "def test_x():\n    pass\n")
    pytester.makeini("[pytest]\ngolden_dir = goldens\n")
    pytester.makepyfile(test_user="def test_mine():\n    pass\n")
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    assert not marker.exists()
    with_catalog = pytester.runpytest("--golden", f"--golden-fixtures={FIXTURES}", "-k", "intruder",
                                      "-p", "no:cacheprovider")
    with_catalog.assert_outcomes(failed=2)
    with_catalog.stdout.fnmatch_lines(["*conftest.py: Python source inside a golden store*"])
    assert not marker.exists()
    results = [r for r in replay_store(GoldenStore(project / "goldens"), [c for c in catalog if c.id == "linear"],
                                       Options(), fixtures=FIXTURES) if r.verdict == "corrupt"]
    assert {r.message.split(": ")[0].rsplit("/", 1)[-1] for r in results} == {"conftest.py", "test_sneaky.py"}
    _verified, findings = verify(project / "goldens")
    assert {f.where for f in findings if "Python source" in f.problem} == {f"{version}/linear/conftest.py",
                                                                           "test_sneaky.py"}


# -- a set that claims another release -----------------------------------------------------------------

def _moved_set(tmp_path, manifest_change):
    """The committed 2.0.1 set copied into a store as 2.13.0, its manifest changed by the attacker."""
    import shutil

    root = tmp_path / "serialized"
    shutil.copytree(REPO / "serialized" / "2.0.1", root / "2.13.0")
    path = root / "2.13.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest_change(manifest)
    path.write_text(json.dumps(manifest))
    return root


def test_pinned_cannot_switch_off_the_release_check(tmp_path, catalog):
    root = _moved_set(tmp_path, lambda m: m.update(pinned=True, torch="1.0.0"))
    results = list(replay_store(GoldenStore(root), [c for c in catalog if c.id == "linear"], Options(),
                                fixtures=FIXTURES))
    assert {r.verdict for r in results} == {"corrupt"}
    assert "it says torch 1.0.0 made the set, but it is the manifest of directory 2.13.0" in results[0].message
    _verified, findings = verify(root)
    assert findings and "it says torch 1.0.0 made the set" in findings[0].problem


def test_a_set_whose_manifest_claims_another_release_is_refused_by_its_archives(tmp_path, catalog):
    """The attacker edits the manifest to name the directory's release: the archives still say who wrote them."""
    root = _moved_set(tmp_path, lambda m: m.update(torch="2.13.0"))
    results = [r for r in replay_store(GoldenStore(root), [c for c in catalog if c.id == "linear"], Options(),
                                       fixtures=FIXTURES) if r.case == "linear"]
    assert results and {r.verdict for r in results} == {"corrupt"}, {(r.verdict, r.message) for r in results}
    assert "has no byteorder record, so torch before 2.1 wrote it, not torch 2.13.0" in results[0].message


def test_verify_agrees_with_replay_on_the_whole_committed_store():
    """No false alarm: every committed golden verifies (a torchao checkpoint this install cannot load
    is said, not counted as a problem: replay reports it as a known load-error)."""
    from harness.catalog import load_catalog

    load_catalog(FIXTURES)  # a torch.package golden's interned source is held to the catalog's modules
    verified, findings = verify(REPO / "serialized")
    assert verified > 4000
    assert [f for f in findings if f.failing] == []


# -- the second round: what a reviewer's attacks on the first version of these checks got through ---

def _member_added(data: bytes, name: str, body: bytes, first: bool = False) -> bytes:
    """The archive with one more member (``first``: before the others)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        if first:
            target.writestr(name, body)
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        if not first:
            target.writestr(name, body)
    return out.getvalue()


def test_a_member_named_like_another_but_for_case_is_one_name_to_torch_and_refused(store, version):
    """torch's zip reader ignores case: archive/CODE/... shadows archive/code/... for it."""
    from harness.goldens.pickles import Refused
    from harness.goldens.vetting import vet

    data = (store / version / "conv2d_graph" / "scripted.pt").read_bytes()
    member = _code_member(data, "def forward")
    shadow = member.replace("/code/", "/CODE/")
    crafted = _member_added(data, shadow, b"def forward(self):\n  torch.save(1, 'x')\n", first=True)
    with pytest.raises(Refused, match="one name to torch's reader, which ignores case"):
        vet("scripted", crafted, "scripted.pt")


def test_every_member_of_a_pt2_is_read_as_torch_export_reads_it(store, version):
    """A weight its config marks pickled may be a protocol-0 pickle or a legacy torch.save whose
    payload is the second pickle; guard code and symbolic sizes are code torch evaluates; a config
    torch never reads may not cancel the one it does."""
    import pickle

    from harness.goldens.pickles import Refused
    from harness.goldens.vetting import vet

    from .test_payloads import _Exec

    data = (store / version / "pt2e-ptq-linear" / "export.pt2").read_bytes()

    def config_and_weight(weight: bytes):
        def change(name, body):
            if name.endswith("model_weights_config.json"):
                config = json.loads(body)
                next(iter(config["config"].values()))["use_pickle"] = True
                return json.dumps(config).encode()
            return weight if name.endswith("/weights/weight_0") else None
        return change

    protocol0 = pickle.dumps(_Exec("x = 1"), protocol=0)
    header = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) + \
        pickle.dumps({}, protocol=2)
    legacy = header + pickle.dumps(_Exec("x = 1"), protocol=2) + pickle.dumps([], protocol=2)
    # torch's legacy reader loads a fifth pickle, the storage keys: a reviewer ran code through it
    # when only four were vetted
    fifth = header + pickle.dumps([], protocol=2) + pickle.dumps(_Exec("x = 1"), protocol=2)
    for weight in (protocol0, legacy, fifth):
        with pytest.raises(Refused, match="names builtins.exec, which is not on the allowlist"):
            vet("export", rezip(data, config_and_weight(weight)), "export.pt2")
    with pytest.raises(Refused, match="not a readable torch.save file"):  # a legacy file torch reads past its end
        vet("export", rezip(data, config_and_weight(header + pickle.dumps([], protocol=2))), "export.pt2")

    def program(change):
        def edit(name, body):
            if name.endswith("models/model.json"):
                text = json.loads(body)
                change(text)
                return json.dumps(text).encode()
            return None
        return rezip(data, edit)

    with pytest.raises(Refused, match="carries guard code"):
        vet("export", program(lambda p: p.update(guards_code=["__import__('os').system('true') == 0"])), "e.pt2")
    with pytest.raises(Refused, match="symbolic size that is not plain arithmetic"):
        vet("export", program(lambda p: p.update(x={"as_expr": {"expr_str": "sympify.__globals__"}})), "e.pt2")
    negative = _member_added(data, "archive/data/extra/x_config.json",
                             json.dumps({"config": {"x": {"path_name": "x", "use_pickle": False, "tensor_meta": {
                                 "sizes": [{"as_int": -(1 << 40)}]}}}}).encode())
    with pytest.raises(Refused, match="not a short list of sizes"):
        vet("export", negative, "e.pt2")


def test_torchscript_cannot_reach_an_operator_through_getattr_or_a_name_bound_elsewhere():
    from harness.goldens.operators import torchscript_problem

    assert "computed call" in torchscript_problem(
        {"m.py": "def f(x):\n  return getattr(torch, 'set_grad_enabled')(False)\n"})
    assert "through getattr on torch" in torchscript_problem(
        {"m.py": "def f(x):\n  _0 = getattr(torch, 'set_grad_enabled')\n  _0(False)\n  return x\n"})
    assert "calls print" in torchscript_problem(
        {"m.py": "def g(print: int):\n  return print\ndef f(x):\n  print(x)\n  return x\n"})


@pytest.mark.parametrize("tensor", ["size-object", "sparse", "huge-size"])
def test_what_a_tensor_needs_is_measured_however_its_size_is_written(tensor):
    import io

    from harness.goldens.pickles import Refused
    from harness.goldens.vetting import vet

    if tensor == "size-object":  # a quantized tensor whose size is a torch.Size of 1.5 GiB
        value = torch._empty_affine_quantized([1], scale=0.5, zero_point=0, dtype=torch.quint8).expand(3 << 29)
    elif tensor == "sparse":  # 4 TiB dense
        value = torch.sparse_coo_tensor(torch.zeros(2, 1, dtype=torch.long), torch.ones(1), (1 << 20, 1 << 20))
    else:
        value = torch.zeros(1).expand(1 << 20)
    buffer = io.BytesIO()
    torch.save(value, buffer)
    data = buffer.getvalue()
    if tensor == "huge-size":  # the size tuple written with a thousand dimensions
        data = rezip(data, lambda name, body: body.replace(b"J\x00\x00\x10\x00\x85", b"(" + b"J\x00\x00\x10\x00" * 1000 + b"t", 1)
                     if name.endswith("data.pkl") else None)
    with pytest.raises(Refused, match="would need|cannot be measured"):
        vet("data", data, "input.pt", trusted=True)


def test_vetting_imports_nothing_a_golden_names(monkeypatch):
    """A package pickle naming harness.cli.__main__.Anything made the vetting import it, running the
    command line; now only torch's own modules may be imported to decide, any other must be loaded already."""
    import sys as _sys

    from harness.goldens.vetting import _module_class_allowed

    monkeypatch.delitem(_sys.modules, "harness.cli.__main__", raising=False)
    assert not _module_class_allowed("harness.cli.__main__.Anything", set())
    assert "harness.cli.__main__" not in _sys.modules


def test_a_store_whose_marker_was_deleted_is_still_not_collected(store, version, tmp_path, pytester, outside_ci):
    import shutil

    marker = tmp_path / "outside" / "conftest-ran"
    marker.parent.mkdir()
    shutil.copytree(store, pytester.path / "elsewhere")
    (pytester.path / "elsewhere" / ".bc-harness-store").unlink()
    (pytester.path / "elsewhere" / version / "linear" / "conftest.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    pytester.makepyfile(test_user="def test_mine():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not marker.exists()
