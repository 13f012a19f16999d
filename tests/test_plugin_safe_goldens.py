"""The plugin keeps a user's goldens safe: no silent overwrite, no silent loss, the same goldens for
the CLI. Each test is a user's repository (a fresh git repository made by pytester) run as a user
runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest

from .conftest import BIN, run_cli

pytestmark = pytest.mark.usefixtures("outside_ci")

MODELS = textwrap.dedent('''
    import pytest
    import torch
    import torch.ao.nn.quantized as nnq


    def conv(kernel, zero_point, seed=0):
        torch.manual_seed(seed)
        m = nnq.Conv2d(3, 3, kernel)
        w = torch.randn(3, 3, kernel, kernel) * 0.5
        m.set_weight_bias(torch.quantize_per_tensor(w, w.abs().max().item() / 127, 0, torch.qint8), torch.randn(3))
        m.scale, m.zero_point = 0.0625, zero_point
        return m


    def example():
        torch.manual_seed(1)
        return torch.quantize_per_tensor(torch.rand(1, 3, 6, 6), 0.05, 10, torch.quint8)
''')


@pytest.fixture
def repo(pytester):
    pytester.makeini("[pytest]\ngolden_dir = goldens\n")
    pytester.makepyfile(models=MODELS)
    subprocess.run(["git", "init", "-q"], cwd=pytester.path, check=True)
    return pytester


def _tests(repo, body: str, name="test_user"):
    repo.makepyfile(**{name: "from models import conv, example\n" + textwrap.dedent(body)})


def _golden_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".bc-harness.lock")}


def test_two_tests_with_one_golden_id_fail_naming_both_and_neither_overwrites(repo):
    _tests(repo, '''
        def test_first(golden):
            golden.check("shared", lambda: conv(3, 64), example(), backends=["fbgemm"])

        def test_second(golden):
            golden.check("shared", lambda: conv(1, 32), example(), backends=["fbgemm"])
    ''')
    wrote = repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider")
    wrote.assert_outcomes(skipped=1, failed=1)
    wrote.stdout.fnmatch_lines(["*golden id 'shared' is used by two tests in this run: test_user.py::test_first "
                                "and test_user.py::test_second*"])
    before = _golden_files(repo.path / "goldens")
    again = repo.runpytest("--golden-update", "-p", "no:cacheprovider")  # no flip-flop, no partial rewrite
    again.assert_outcomes(passed=1, failed=1)
    assert _golden_files(repo.path / "goldens") == before


def test_a_golden_id_shared_across_xdist_workers_is_found_too(repo):
    _tests(repo, "\n".join(f'''
def test_{i}(golden):
    golden.check("shared" if {i} in (0, 5) else "own-{i}", lambda: conv(1, 32), example(), backends=["fbgemm"])
''' for i in range(6)))
    run = repo.runpytest_subprocess("-n", "2", "--golden-update-new-only", "-p", "no:cacheprovider", timeout=300)
    run.assert_outcomes(skipped=5, failed=1)
    run.stdout.fnmatch_lines(["*golden id 'shared' is used by two tests in this run*"])


def test_a_golden_folder_deleted_by_hand_is_missing_with_the_command_that_restores_it(repo):
    _tests(repo, '''
        def test_it(golden):
            golden.check("mine", lambda: conv(3, 64), example(), backends=["fbgemm"])
    ''')
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider").assert_outcomes(skipped=1)
    before = _golden_files(repo.path / "goldens")
    shutil.rmtree(repo.path / "goldens" / _version() / "mine")
    missing = repo.runpytest("-p", "no:cacheprovider")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*to write it (what exists stays as it is): pytest test_user.py::test_it "
                                  "--golden-update-new-only*"])
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider").assert_outcomes(skipped=1)
    assert _golden_files(repo.path / "goldens") == before
    repo.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def _version():
    from harness.compat import torch_release

    return torch_release()


TWO = '''
    def test_a(golden):
        golden.check("golden-a", lambda: conv(3, 64), example(), backends=["fbgemm"], artifacts=ARTIFACTS)

    def test_b(golden):
        golden.check("golden-b", lambda: conv(1, 32), example(), backends=["fbgemm"])
'''


def test_unused_goldens_fail_in_ci_and_a_narrowed_run_never_calls_the_others_unused(repo, monkeypatch):
    _tests(repo, 'ARTIFACTS = ("state_dict", "scripted", "traced")\n' + textwrap.dedent(TWO))
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider").assert_outcomes(skipped=2)
    narrowed = repo.runpytest("test_user.py::test_a", "--golden-prune", "-p", "no:cacheprovider")
    narrowed.assert_outcomes(passed=1)
    assert (repo.path / "goldens" / _version() / "golden-b").is_dir()  # test_b exists: not unused, not pruned
    assert "unused golden" not in narrowed.stdout.str()
    keyworded = repo.runpytest("-k", "test_a", "--golden-prune", "-p", "no:cacheprovider")
    keyworded.assert_outcomes(passed=1, deselected=1)
    assert (repo.path / "goldens" / _version() / "golden-b").is_dir()
    # test_b is gone and test_a no longer asks for its traced file
    _tests(repo, 'ARTIFACTS = ("state_dict", "scripted")\n' + textwrap.dedent(TWO).split("def test_b")[0])
    local = repo.runpytest("-p", "no:cacheprovider")
    local.assert_outcomes(passed=1)
    local.stdout.fnmatch_lines(["1 unused golden(s) and 1 artifact kind(s) no test asks for (remove them: pytest "
                                "--golden-prune; -v lists them)"])
    ci = repo.runpytest("--golden-ci", "-p", "no:cacheprovider")
    assert ci.ret == 1
    ci.stdout.fnmatch_lines(["FAILED in CI: 1 unused golden(s) and 1 artifact kind(s) no test asks for (prune them "
                             "on a developer machine: pytest --golden-prune):",
                             "*golden-b: test_user.py::test_b no longer exists",
                             "*golden-a ?traced?: test_user.py::test_a no longer asks for it"])
    repo.runpytest("--golden-prune", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (repo.path / "goldens" / _version() / "golden-b").exists()
    assert not (repo.path / "goldens" / _version() / "golden-a" / "traced.pt").exists()
    assert (repo.path / "goldens" / _version() / "golden-a" / "scripted.pt").exists()
    clean = repo.runpytest("--golden-ci", "-p", "no:cacheprovider")
    clean.assert_outcomes(passed=1)
    assert clean.ret == 0


def test_pruning_under_xdist_removes_exactly_the_unused(repo):
    _tests(repo, 'ARTIFACTS = ("state_dict",)\n' + textwrap.dedent(TWO))
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider").assert_outcomes(skipped=2)
    _tests(repo, 'ARTIFACTS = ("state_dict",)\n' + textwrap.dedent(TWO).split("def test_b")[0])
    run = repo.runpytest_subprocess("-n", "2", "--golden-prune", "-p", "no:cacheprovider", timeout=300)
    run.assert_outcomes(passed=1)
    assert sorted(p.name for p in (repo.path / "goldens" / _version()).iterdir() if p.is_dir()) == ["golden-a"]


def test_an_artifact_kind_that_cannot_be_made_fails_with_the_reason(repo):
    repo.makepyfile(test_user=textwrap.dedent('''
        import torch
        from torch.ao.quantization import quantize_dynamic


        class TwoInputs(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 2)

            def forward(self, *inputs):
                return self.fc(inputs[0] + inputs[1])


        def build():
            torch.manual_seed(0)
            return quantize_dynamic(TwoInputs(), dtype=torch.qint8)


        def test_it(golden):
            torch.manual_seed(1)
            golden.check("two", build, (torch.rand(3, 4), torch.rand(3, 4)), backends=["fbgemm"])
    '''))
    for flags in (["--golden-update-new-only"], []):
        run = repo.runpytest(*flags, "-p", "no:cacheprovider")
        run.assert_outcomes(failed=1)
        run.stdout.fnmatch_lines(["*artifact 'scripted' was asked for, but torch * cannot make it: *",
                                  "*drop it from artifacts= (or mark the test xfail while it cannot)*"])


def test_the_store_carries_its_gitignore_so_git_sees_only_goldens(repo):
    _tests(repo, '''
        def test_it(golden):
            golden.check("mine", lambda: conv(3, 64), example(), backends=["fbgemm"])
    ''')
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider")
    repo.runpytest("-p", "no:cacheprovider")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo.path,
                            capture_output=True, text=True, check=True).stdout
    assert ".bc-harness.lock" not in status and ".stage-" not in status and ".tmp" not in status
    assert "goldens/.gitignore" in status and "goldens/.bc-harness-store" in status
    assert f"goldens/{_version()}/mine/state_dict.pt" in status


def _differing_members(a: bytes, b: bytes | None) -> list:
    """The members of two zip archives that differ, with both versions' first bytes where they differ."""
    import io
    import zipfile

    if b is None or not (a.startswith(b"PK") and b.startswith(b"PK")):
        return ["(not two archives)"]
    za, zb = zipfile.ZipFile(io.BytesIO(a)), zipfile.ZipFile(io.BytesIO(b))
    out = [("order", za.namelist(), zb.namelist())] if za.namelist() != zb.namelist() else []
    for name in za.namelist():
        x, y = za.read(name), zb.read(name) if name in zb.namelist() else None
        if x != y:
            at = next((i for i, (p, q) in enumerate(zip(x, y or b"")) if p != q), 0)
            out.append((name, x[max(0, at - 60):at + 60], (y or b"")[max(0, at - 60):at + 60]))
    return out


def test_goldens_are_byte_reproducible_in_any_order_and_from_any_path(repo, tmp_path):
    """TorchScript numbers the types it compiles per process, and its archives recorded the absolute
    paths and line numbers of the code they were compiled from: two tests scripting the same class
    with different constants, written in two orders from two checkouts, give the same bytes."""
    _tests(repo, '''
        def test_a(golden):
            golden.check("golden-a", lambda: conv(3, 64), example(), backends=["fbgemm"])

        def test_b(golden):
            golden.check("golden-b", lambda: conv(1, 32), example(), backends=["fbgemm"])
    ''')
    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(repo.path, elsewhere)
    repo.runpytest("test_user.py::test_a", "test_user.py::test_b", "--golden-update-new-only", "-p", "no:cacheprovider")
    reordered = subprocess.run([str(BIN / "pytest"), "test_user.py::test_b", "test_user.py::test_a",
                                "--golden-update-new-only", "-p", "no:cacheprovider"], cwd=elsewhere,
                               capture_output=True, text=True)
    assert reordered.returncode == 0, reordered.stdout[-2000:]
    first, second = _golden_files(repo.path / "goldens"), _golden_files(elsewhere / "goldens")
    assert first.keys() == second.keys() and first == second, {n: _differing_members(first[n], second.get(n))
                                                                for n in first if first[n] != second.get(n)}
    assert not [n for n in first if b"another/checkout" in first[n] or str(repo.path).encode() in first[n]]
    manifests = [json.loads((root / "goldens" / _version() / "manifest.json").read_text())
                 for root in (repo.path, elsewhere)]
    assert manifests[0]["cases"] == manifests[1]["cases"] and manifests[0]["files"] == manifests[1]["files"]
    # and with nothing changed, an update rewrites nothing: git sees no change at all
    before = (repo.path / "goldens" / _version() / "manifest.json").read_bytes()
    repo.runpytest("--golden-update", "-p", "no:cacheprovider")
    assert (repo.path / "goldens" / _version() / "manifest.json").read_bytes() == before


def test_a_changed_weight_that_does_not_reach_the_output_is_caught_by_name(repo):
    repo.makepyfile(test_user=textwrap.dedent('''
        import torch
        from torch.ao.quantization import quantize_dynamic

        SPARE = 0.5


        class WithSpare(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 2)
                self.register_buffer("spare", torch.full((3,), SPARE))  # never reaches the output

            def forward(self, x):
                return self.fc(x)


        def build():
            torch.manual_seed(0)
            return quantize_dynamic(WithSpare(), dtype=torch.qint8)


        def test_it(golden):
            torch.manual_seed(1)
            golden.check("spare", build, torch.rand(3, 4), backends=["fbgemm"], artifacts=("state_dict",))
    '''))
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider").assert_outcomes(skipped=1)
    source = (repo.path / "test_user.py").read_text().replace("SPARE = 0.5", "SPARE = 0.75")
    (repo.path / "test_user.py").write_text(source)
    changed = repo.runpytest("-p", "no:cacheprovider")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*spare · model · fbgemm: drift — state_dict?'spare'?: 3 of 3 elements differ*"])


def test_quiet_by_default_and_every_suggested_command_keeps_the_users_flags(repo):
    _tests(repo, '''
        def test_it(golden):
            golden.check("mine", lambda: conv(3, 64), example(), backends=["fbgemm"])
    ''')
    (repo.path / "elsewhere").mkdir()
    run = repo.runpytest("--golden-dir=elsewhere", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*pytest test_user.py::test_it --golden-update-new-only --golden-dir=elsewhere*"])
    repo.runpytest("--golden-dir=elsewhere", "--golden-update-new-only", "-p", "no:cacheprovider")
    quiet = repo.runpytest_subprocess("--golden-dir=elsewhere", "-p", "no:cacheprovider")  # as a user runs it
    quiet.assert_outcomes(passed=1)
    text = quiet.stdout.str()
    if "warnings summary" in text:  # the user's own code warns (its example() quantizes); nothing else does
        block = text[text.index("warnings summary"):text.index("golden summary")]
        assert "harness" not in block and "models.py" in block, block
    summary = text[text.index("golden summary"):]
    assert len([line for line in summary.splitlines() if "warning(s) raised" in line]) == 1  # one line, -v lists them
    assert "-v lists them" in summary


def test_the_cli_replays_and_regenerates_plugin_goldens(repo):
    _tests(repo, '''
        def test_it(golden):
            golden.check("mine", lambda: conv(3, 64), example(), backends=["fbgemm"])
    ''')
    repo.runpytest("--golden-update-new-only", "-p", "no:cacheprovider")
    replay = run_cli("bc-harness", "replay", "goldens", "-v", cwd=repo.path, check=0)
    import re

    assert re.search(r"mine\s+scripted\s+pass", replay.stdout) and re.search(r"mine\s+traced\s+pass", replay.stdout)
    assert "its model is built by its test (test_user.py::test_it): pytest replays it" in replay.stdout
    run_cli("bc-harness", "verify", "goldens", cwd=repo.path, check=0)
    before = _golden_files(repo.path / "goldens")
    shutil.rmtree(repo.path / "goldens" / _version() / "mine")
    again = run_cli("regenerate-goldens", "--goldens", "goldens", cwd=repo.path, check=0)
    assert "regenerating the goldens of 1 test(s) by running them" in again.stdout
    assert _golden_files(repo.path / "goldens") == before


@pytest.mark.slow
def test_regenerate_goldens_makes_a_users_goldens_under_another_torch(repo):
    """A 2.13 project gets torch 2.8.0's goldens of its own tests without installing 2.8.0 in its
    environment (the nightly tier: the environment is several GB)."""
    _tests(repo, '''
        def test_it(golden):
            golden.check("mine", lambda: conv(3, 64), example(), backends=["fbgemm"])
    ''')
    made = run_cli("regenerate-goldens", "--goldens", "goldens", "--torch", "2.8.0", cwd=repo.path, check=0)
    assert "wrote" in made.stdout and (repo.path / "goldens" / "2.8.0" / "mine" / "scripted.pt").is_file()
    replay = run_cli("bc-harness", "replay", "goldens", "-q", cwd=repo.path, check=0)
    assert "OK:" in replay.stdout
    repo.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
