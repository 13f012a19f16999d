"""The plugin as a user meets it in a repository of their own: where goldens go, what a failure
says, backends that cannot run a file, a torch upgrade, warnings, text a reviewer reads.

Each pytester session below is a repository with no harness configuration at all, unless the
test gives it one, as the README's plugin section has a new user start."""

import json
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO

CONV = textwrap.dedent('''
    import warnings

    import torch
    from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare

    GAIN = 1.0

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.conv, self.dequant = QuantStub(), torch.nn.Conv2d(2, 3, 3), DeQuantStub()

        def forward(self, x):
            warnings.warn("TinyNet.forward is deprecated, use forward_v2", DeprecationWarning)
            return self.dequant(self.conv(self.quant(x)))

    def tinynet():
        torch.manual_seed(0)
        m = TinyNet().eval()
        m.qconfig = get_default_qconfig("fbgemm")
        prepare(m, inplace=True)
        m(torch.rand(2, 2, 6, 6) * GAIN)
        return convert(m)

    def test_tinynet(golden):
        torch.manual_seed(1)
        # its forward warns, which TorchScript cannot script: the kinds it can have are asked for
        golden.check("tinynet", tinynet, torch.rand(1, 2, 6, 6), backends=["fbgemm", "qnnpack"],
                     artifacts=("state_dict", "traced"))
''')


#: every test starts outside CI mode, whatever runs the suite; one that wants CI mode sets it
pytestmark = pytest.mark.usefixtures("outside_ci")


@pytest.fixture
def repo(pytester):
    """A user's repository: a pyproject.toml of their own, no [tool.bc-harness], no ini options."""
    pytester.makefile(".toml", pyproject='[project]\nname = "mymodels"\nversion = "0.1"\n')
    return pytester


def _version():
    from harness.compat import torch_release

    return torch_release()


def _manifest(repo, version=None):
    return json.loads((repo.path / "serialized" / (version or _version()) / "manifest.json").read_text())


def _harness_store():
    """Every byte of this checkout's own store, to show a user's run never touches it."""
    root = REPO / "serialized"
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".bc-harness.lock"}


# 1. goldens go to the user's tree ---------------------------------------------------------------

def test_goldens_go_to_the_users_rootdir_and_the_harness_store_is_untouched(repo):
    before = _harness_store()
    repo.makepyfile(test_models=CONV)
    written = repo.runpytest("--golden-update-new-only")
    written.assert_outcomes(skipped=1)
    where = (repo.path / "serialized" / _version() / "tinynet").resolve()
    written.stdout.fnmatch_lines([f"wrote {where} (test_models.py::test_tinynet)"])
    assert (where / "expected.fbgemm.pt").is_file()
    assert _harness_store() == before
    repo.runpytest().assert_outcomes(passed=1)


def test_the_configured_directory_wins(repo):
    repo.makefile(".toml", pyproject='[tool.bc-harness]\ngoldens = "golden-data"\n')
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only").stdout.fnmatch_lines(
        [f"wrote {(repo.path / 'golden-data' / _version() / 'tinynet').resolve()} *"])
    assert not (repo.path / "serialized").exists()


# 2. --golden without a catalog is a usage error ------------------------------------------------

def test_golden_catalog_without_fixtures_is_one_line_and_exit_4(repo):
    repo.makepyfile(test_models=CONV)
    result = repo.runpytest("--golden")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and "--golden-fixtures=DIR" in errors[0] and "[tool.bc-harness]" in errors[0]
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# 3, 4. a failure is its message, and says how to accept it --------------------------------------

def test_a_drift_shows_no_plugin_source_folds_backends_and_names_the_accepting_command(repo):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    repo.makepyfile(test_models=CONV.replace("GAIN = 1.0", "GAIN = 1.5"))
    failed = repo.runpytest()
    failed.assert_outcomes(failed=1)
    out = failed.stdout.str()
    assert "def check(" not in out and "fixture.py" not in out and "GoldenChecker object" not in out
    assert "E       harness.pytest_plugin.GoldenFailure: golden" in out
    failed.stdout.fnmatch_lines([f"*golden {_version()} · tinynet · model · fbgemm, qnnpack: drift*",
                                 "*to accept this change*: pytest test_models.py::test_tinynet --golden-update"])
    assert out.count("differ  ") == 1  # the diagnostics once, not once per backend


def test_a_backend_typo_is_a_short_failure(repo):
    repo.makepyfile(test_models=CONV.replace('backends=["fbgemm", "qnnpack"]', 'backends=["fbgem"]'))
    failed = repo.runpytest()
    failed.assert_outcomes(failed=1)
    # the failure's own lines (an in-process session adds a warnings summary after them)
    section = failed.stdout.str().split("FAILURES", 1)[1].split("short test summary", 1)[0].split("warnings summary")[0]
    assert "ValueError: backend 'fbgem' is not one of fbgemm" in section and "def _case" not in section
    assert len(section.splitlines()) < 15


# 5. backends that cannot run a file, and backends no longer asked for ---------------------------

PICKY = CONV + textwrap.dedent('''
    class Picky(torch.nn.Module):
        """Loads its state_dict under any engine but qnnpack (as a packed format might not)."""

        def __init__(self):
            super().__init__()
            self.inner = tinynet()

        def forward(self, x):
            return self.inner(x)

        def _load_from_state_dict(self, *args, **kwargs):
            if torch.backends.quantized.engine == "qnnpack":
                raise RuntimeError("this packed format has no qnnpack kernel")
            return super()._load_from_state_dict(*args, **kwargs)

    def test_picky(golden):
        torch.manual_seed(1)
        golden.check("picky", Picky, torch.rand(1, 2, 6, 6), backends=["fbgemm", "qnnpack"],
                     artifacts=("state_dict", "traced"))
''')


def test_a_file_a_backend_cannot_run_is_recorded_as_a_skip_when_written(repo):
    repo.makepyfile(test_models=PICKY)
    repo.runpytest("--golden-update-new-only", "-k", "picky").assert_outcomes(skipped=1, deselected=1)
    why = _manifest(repo)["cases"]["picky"]["unrunnable"]["state_dict"]["qnnpack"]
    assert "qnnpack cannot run the state_dict file" in why and "no qnnpack kernel" in why
    report = repo.path / "r.json"
    repo.runpytest("-k", "picky", f"--golden-report={report}").assert_outcomes(passed=1, deselected=1)
    records = json.loads(report.read_text())
    state_dict = {r["backend"]: r for r in records if r["artifact"] == "state_dict"}
    assert state_dict["qnnpack"]["verdict"] == "skip" and "no qnnpack kernel" in state_dict["qnnpack"]["message"]
    assert state_dict["fbgemm"]["verdict"] == "pass" and not [r for r in records if r["verdict"] == "load-error"]


def test_a_backend_no_longer_asked_for_is_unused_and_pruned(repo):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    repo.makepyfile(test_models=CONV.replace('backends=["fbgemm", "qnnpack"]', 'backends=["fbgemm"]'))
    listed = repo.runpytest("-v")  # -v lists them
    listed.assert_outcomes(passed=1)
    listed.stdout.fnmatch_lines(["*1 unused golden(s)*",
                                 "*tinynet [[]qnnpack]: test_models.py::test_tinynet passed without asking for qnnpack"])
    pruned = repo.runpytest("--golden-prune")
    pruned.stdout.fnmatch_lines(["pruned 1 unused backend golden(s) from *: tinynet [[]qnnpack]"])
    manifest = _manifest(repo)
    assert "tinynet/expected.qnnpack.pt" not in manifest["files"]
    assert manifest["cases"]["tinynet"]["backends"]["qnnpack"].startswith("removed: pruned (--golden-prune)")
    assert not (repo.path / "serialized" / _version() / "tinynet" / "expected.qnnpack.pt").exists()
    again = repo.runpytest()
    again.assert_outcomes(passed=1)
    assert "unused golden" not in again.stdout.str()


# 6. a torch upgrade -----------------------------------------------------------------------------

def test_after_a_torch_upgrade_the_older_set_is_replayed_and_the_gap_is_a_note(repo, monkeypatch):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    root = repo.path / "serialized"
    (root / _version()).rename(root / "2.8.0")
    manifest = json.loads((root / "2.8.0" / "manifest.json").read_text())
    manifest["torch"] = "2.8.0"  # as if torch 2.8.0 had written it
    (root / "2.8.0" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("CI", "true")
    passed = repo.runpytest()
    passed.assert_outcomes(passed=1)
    passed.stdout.fnmatch_lines([f"1 golden test(s) have no golden for torch {_version()} yet*",
                                 "  tinynet: newest golden 2.8.0 (test_models.py::test_tinynet)"])
    strict = repo.runpytest("--golden-require-current")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*missing*--golden-require-current*", "*--golden-update-new-only*"])


# 7. the update table, the manifest -------------------------------------------------------------

def test_update_table_gives_a_float_change_in_value_and_the_failures_counts(repo):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    assert _manifest(repo)["command"] == "pytest test_models.py::test_tinynet --golden-update-new-only"
    assert _manifest(repo)["cases"]["tinynet"]["flow"] == "eager"
    repo.makepyfile(test_models=CONV.replace("GAIN = 1.0", "GAIN = 1.5"))
    message = repo.runpytest().stdout.str()
    counted = message.split("model · fbgemm, qnnpack: drift — output: ", 1)[1].split(" elements differ")[0]
    rewritten = repo.runpytest("--golden-update").stdout.str()
    assert "CHANGED |Δ| " in rewritten and "? steps" not in rewritten
    assert f"output: {counted} elements differ" in rewritten
    assert _manifest(repo)["command"] == "pytest test_models.py::test_tinynet --golden-update"


def test_a_dynamic_model_is_recorded_as_the_dynamic_flow(repo):
    repo.makepyfile(test_dyn=textwrap.dedent('''
        import torch
        from torch.ao.quantization import quantize_dynamic

        def build():
            torch.manual_seed(0)
            return quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 3)), dtype=torch.qint8)

        def test_dyn(golden):
            golden.check("dyn", build, torch.rand(2, 4), backends=["fbgemm"])
    '''))
    repo.runpytest("--golden-update-new-only").assert_outcomes(skipped=1)
    assert _manifest(repo)["cases"]["dyn"]["flow"] == "dynamic"


# 8. warnings ------------------------------------------------------------------------------------

def test_deprecation_warnings_are_recorded_and_shown_and_numpy_noise_is_not(repo):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    report = repo.path / "r.json"
    result = repo.runpytest(f"--golden-report={report}", "-v")  # -v lists the warnings (one line without)
    result.assert_outcomes(passed=1)
    expected = "DeprecationWarning: TinyNet.forward is deprecated, use forward_v2"
    assert any(expected in r["warnings"] for r in json.loads(report.read_text()))
    result.stdout.fnmatch_lines(["*distinct warning(s) raised by the checked models*", f"*× {expected}"])
    assert "Failed to initialize NumPy" not in result.stdout.str() + result.stderr.str()
    assert expected in json.dumps(_manifest(repo)["cases"]["tinynet"]["warnings"])


LEGACY = textwrap.dedent('''
    import torch
    from torch.ao.quantization import quantize_dynamic

    def build():  # torch 2.13 warns on the quantized dtypes (a C++ warning) and on torch.ao.quantization
        torch.manual_seed(0)
        return quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 2)), dtype=torch.qint8)

    def test_legacy(golden):
        torch.manual_seed(1)
        golden.check("legacy", build, torch.rand(3, 4), backends=["fbgemm"], artifacts=("state_dict", "scripted"))

    def test_unrelated():
        assert True
''')


def test_a_users_suite_under_w_error_passes_with_the_plugin_and_fails_only_when_asked(repo):
    """fms-model-optimizer#210: a suite run with -W error broke on torch 2.13's quantized-dtype
    deprecation. The checks record the notices and never raise them; --golden-deprecations=error is
    how a user asks for them to fail."""
    repo.makepyfile(test_models=LEGACY)
    # without numpy (the README's install has none) torch's import warns "Failed to initialize NumPy",
    # which -W error must not turn into a collection error either
    repo.makepyfile(numpy='raise ModuleNotFoundError("No module named numpy", name="numpy")')
    repo.runpytest("--golden-update-new-only").assert_outcomes(passed=1, skipped=1)
    report = repo.path / "r.json"
    # a fresh interpreter, as the user runs it (in this process -W error would also catch pytest's own
    # notice that the already imported harness cannot be assertion-rewritten)
    result = repo.runpytest_subprocess("-W", "error", "-W", "error::DeprecationWarning", f"--golden-report={report}")
    result.assert_outcomes(passed=2)
    noted = {w for r in json.loads(report.read_text()) for w in r["warnings"]}
    assert any("quantized tensor creation functions" in w and "(deprecation)" in w for w in noted)
    asked = repo.runpytest("--golden-deprecations=error")
    asked.assert_outcomes(passed=1, failed=1)
    asked.stdout.fnmatch_lines(["*deprecation notice(s) raised while loading and running its goldens*",
                                "*torch.quantize_per_tensor, torch.quantize_per_channel*", "*raised by: *"])


def test_native_warnings_on_descriptor_2_are_caught_and_other_output_passes_through(capfd):
    import os

    from harness.notices import quiet, runtime_warnings

    with quiet() as caught:
        os.write(2, b"[W1202 10:00:00.1 qlinear.cpp:25] Warning: qnnpack ignores reduce_range (function op)\n")
        os.write(2, b"something else\n")
    assert runtime_warnings(caught) == ["C++ warning: qnnpack ignores reduce_range"]
    err = capfd.readouterr().err
    assert "something else" in err and "reduce_range" not in err


# 9. text a reviewer reads -----------------------------------------------------------------------

def test_each_golden_has_a_values_text_that_changes_with_its_numbers(repo):
    repo.makepyfile(test_models=CONV)
    repo.runpytest("--golden-update-new-only")
    text_file = repo.path / "serialized" / _version() / "tinynet" / "values.txt"
    before = text_file.read_text()
    assert "tinynet/values.txt" in _manifest(repo)["files"]
    assert "conv.weight: torch.qint8 (3, 2, 3, 3) per-channel axis 0 scales [" in before
    assert "expected.fbgemm: torch.float32 (1, 3, 4, 4); min " in before and "expected.qnnpack: " in before
    assert " at 0x" not in before
    repo.makepyfile(test_models=CONV.replace("GAIN = 1.0", "GAIN = 1.5"))
    repo.runpytest("--golden-update")
    after = text_file.read_text()
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert any(line.startswith("expected.fbgemm:") for line in changed)


# 10. platforms ----------------------------------------------------------------------------------

def test_the_package_imports_and_locks_without_fcntl(tmp_path):
    """Windows has no fcntl: the store's lock is filelock's, and nothing imports fcntl itself."""
    code = textwrap.dedent(f'''
        import sys, warnings
        sys.modules["fcntl"] = None  # as on Windows: importing it fails
        warnings.simplefilter("ignore")
        import harness.goldens.store, harness.making.writing, harness.pytest_plugin, harness.cli, harness.replaying.schedule
        with harness.goldens.store.GoldenStore({str(tmp_path)!r}).lock():
            print("locked")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "locked", out.stderr


def test_every_plugin_flag_is_in_the_manual():
    import re

    options = (REPO / "harness" / "pytest_plugin" / "options.py").read_text()
    readme = (REPO / "docs" / "plugin.md").read_text()
    flags = set(re.findall(r'addoption\("(--golden[a-z-]*)"', options))
    assert flags and not [f for f in sorted(flags) if f"`{f}" not in readme]
    assert ".bc-harness.lock" in readme
