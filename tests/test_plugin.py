"""The pytest plugin, through real pytest sessions (pytester) in temporary directories."""

import json
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness.pytest_plugin import ci_environment

from .conftest import FIXTURES, REPO

USER_TESTS = textwrap.dedent('''
    import pytest
    import torch
    from torch.ao.nn.quantized import Linear

    SEED = 0

    def build():
        torch.manual_seed(SEED)
        m = Linear(4, 2)
        w = torch.randn(2, 4)
        m.set_weight_bias(torch.quantize_per_tensor(w, w.abs().max().item() / 127, 0, torch.qint8),
                          torch.randn(2))
        m.scale, m.zero_point = 0.0625, 64
        return m

    def example():
        torch.manual_seed(1)
        return torch.quantize_per_tensor(torch.rand(3, 4), 0.05, 10, torch.quint8)

    def test_linear(golden):
        golden.check("my-linear", build, example(), backends=["fbgemm", "qnnpack"])
''')


#: the plugin's CI detection is under test: every test starts outside CI, whatever runs us
pytestmark = pytest.mark.usefixtures("outside_ci")


@pytest.fixture
def project(pytester):
    pytester.makeini("[pytest]\ngolden_dir = goldens\n")
    return pytester


def _user(project, source=USER_TESTS, name="test_user"):
    project.makepyfile(**{name: source})


def _manifest(project):
    return json.loads((project.path / "goldens" / _version() / "manifest.json").read_text())


def _version():
    from harness.compat import torch_release

    return torch_release()


# 1. registration, no torch at import -----------------------------------------------------

def test_plugin_is_registered_through_pytest11():
    from importlib.metadata import entry_points

    assert any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11"))


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, harness.pytest_plugin; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unrelated_pytest_run_never_imports_torch(pytester):
    pytester.makepyfile("""
        import sys
        def test_plain():
            assert not [m for m in sys.modules if m.split('.')[0] == 'torch']
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# 2. options ---------------------------------------------------------------------------------

def test_options_form_one_group_with_one_prefix(pytester):
    out = pytester.runpytest("--help").stdout.str()
    section = out[out.index("bc-harness: golden checks"):]
    section = section[: section.index("\n\n")]
    for flag in ("--golden ", "--golden-dir", "--golden-backend", "--golden-layout", "--golden-update ",
                 "--golden-update-new-only", "--golden-ci", "--golden-prune", "--golden-report"):
        assert flag in section, flag
    assert "golden_catalog" in out and "golden_dir" in out


def test_state_lives_in_config_stash(pytester):
    pytester.makepyfile("""
        from harness.pytest_plugin import SESSION, GoldenSession
        def test_state(request):
            state = request.config.stash[SESSION]
            assert isinstance(state, GoldenSession)
            assert state.update == "new" and state.catalog is False and state.backends == ["qnnpack"]
            assert not [k for k in vars(request.config) if "golden" in k.lower()]
    """)
    pytester.runpytest("--golden-update-new-only", "--golden-backend", "qnnpack").assert_outcomes(passed=1)


# 3. the catalog as tests ------------------------------------------------------------------------

@pytest.fixture
def full_store(tmp_path):
    """A private copy of the committed goldens of the running torch: the whole catalog, one version."""
    from harness.compat import torch_release

    target = tmp_path / "committed"
    shutil.copytree(REPO / "serialized" / torch_release(), target / torch_release())
    return target


@pytest.fixture
def catalog_args(full_store):
    return ["--golden", f"--golden-dir={full_store}", f"--golden-fixtures={FIXTURES}", "-p", "no:cacheprovider"]


def test_catalog_items_have_readable_ids_and_k_works(pytester, catalog_args, version):
    out = pytester.runpytest(*catalog_args, "--collect-only", "-q").stdout.str()
    assert f"golden-catalog::linear[scripted-fbgemm-from-{version}]" in out
    assert f"golden-catalog::per_tensor_observer[state_dict-any-from-{version}]" in out
    result = pytester.runpytest(*catalog_args, "-k", "linear_dynamic and traced")
    result.assert_outcomes(passed=6, skipped=2)  # qint8 on 4 backends, fp16 on fbgemm and x86


def test_unsupported_combinations_skip_with_the_reason(pytester, catalog_args):
    result = pytester.runpytest(*catalog_args, "-k", "linear_dynamic-float16 and qnnpack", "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*not supported by QNNPACK*"])


def test_backend_option_restricts_items(pytester, catalog_args):
    out = pytester.runpytest(*catalog_args, "--golden-backend", "fbgemm", "--collect-only", "-q").stdout.str()
    ids = [line for line in out.splitlines() if "golden-catalog::" in line]
    assert ids and all("-fbgemm-from-" in i or "-any-from-" in i for i in ids)


def test_failure_shows_numeric_diagnostics_and_saves_obtained(pytester, catalog_args, full_store, version, tmp_path):
    store = full_store
    import torch

    from harness.goldens.safeload import save_bytes
    from harness.goldens.store import sha256

    name = "linear_dynamic-qint8/expected.fbgemm.pt"
    golden = torch.load(store / version / name, weights_only=True)
    _vouch(store, version, name, save_bytes(golden + 0.5))
    report = tmp_path / "out" / "report.json"
    result = pytester.runpytest(*catalog_args, "-k", "linear_dynamic-qint8 and scripted and fbgemm",
                                f"--golden-report={report}")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    for expected in ("dtype    golden torch.float32", "shape    golden (1, 1)", "differ   1 of 1 elements (100.0%)",
                     "|Δ|      max 0.5", "index", "golden", "obtained"):
        assert expected in text, expected
    saved = [line.split("saved to ", 1)[1].strip() for line in text.splitlines() if "obtained output saved to" in line]
    assert saved and str(report.parent) in saved[0] and str(store) not in saved[0]
    assert torch.load(saved[0], weights_only=True).shape == (1, 1)
    assert sha256((store / version / name).read_bytes()) == _manifest_at(store, version)["files"][name]["sha256"]


def test_get_attr_target_changes_show_added_and_removed(pytester, catalog_args, full_store, version):
    store = full_store
    from harness.goldens.safeload import save_bytes

    name = "linear_relu_package_quantization_transforms/get_attr_targets.pt"
    _vouch(store, version, name, save_bytes(["child_packed_weight_0", "gone_attr"]))
    result = pytester.runpytest(*catalog_args, "-k", "linear_relu_package and fbgemm")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*added:*_packed_weight_0*", "*removed: ?'gone_attr'?"])


def test_pytorch_layout_through_the_plugin(pytester, tmp_path):
    from . import pytorch_suite_writer

    directory = pytorch_suite_writer.write(tmp_path / "pt")
    result = pytester.runpytest("--golden", "--golden-layout", "pytorch", f"--golden-dir={directory}",
                                f"--golden-fixtures={FIXTURES}", "--golden-trust-unverified",
                                "--golden-backend", "fbgemm", "-k", "linear_dynamic", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*golden-catalog::linear_dynamic-qint8?state_dict-fbgemm-from-pytorch? PASSED*"])


def _manifest_at(store, version):
    return json.loads((store / version / "manifest.json").read_text())


def _vouch(store, version, name, data):
    from harness.goldens.store import sha256

    (store / version / name).write_bytes(data)
    manifest = _manifest_at(store, version)
    manifest["files"][name] = {"sha256": sha256(data), "size": len(data)}
    (store / version / "manifest.json").write_text(json.dumps(manifest))


# 4 and 5. the fixture, updating -------------------------------------------------------------------

def test_missing_golden_fails_with_the_command_that_creates_it(project):
    _user(project)
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest test_user.py::test_linear --golden-update-new-only*"])
    assert not (project.path / "goldens" / _version()).exists()


def test_update_writes_then_the_next_run_passes(project):
    _user(project)
    written = project.runpytest("--golden-update-new-only", "-rs")
    written.assert_outcomes(skipped=1)
    where = project.path.resolve() / "goldens" / _version() / "my-linear"
    written.stdout.fnmatch_lines([f"*wrote {where} (test_user.py::test_linear)*",
                                  "*golden written in this run; nothing was compared*"])
    entry = _manifest(project)["cases"]["my-linear"]
    assert entry["owner"] == "test_user.py::test_linear" and set(entry["backends"]) == {"fbgemm", "qnnpack"}
    assert _manifest(project)["command"] == "pytest test_user.py::test_linear --golden-update-new-only"
    project.runpytest().assert_outcomes(passed=1)


def test_renaming_the_test_keeps_its_goldens(project):
    _user(project)
    project.runpytest("--golden-update-new-only").assert_outcomes(skipped=1)
    renamed = USER_TESTS.replace("def test_linear(golden):", "class TestRenamed:\n    def test_other(self, golden):")
    renamed = renamed.replace('    golden.check("my-linear"', '        golden.check("my-linear"')
    (project.path / "test_user.py").unlink()
    _user(project, renamed, name="test_moved")
    result = project.runpytest()
    result.assert_outcomes(passed=1)
    assert "unused golden" not in result.stdout.str()


def test_changed_model_fails_in_steps_and_update_rewrites_it(project):
    _user(project)
    project.runpytest("--golden-update-new-only").assert_outcomes(skipped=1)
    _user(project, USER_TESTS.replace("SEED = 0", "SEED = 7"))
    failed = project.runpytest()
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*my-linear*drift*", "*qparams  golden*", "*differ*of 6 elements*", "*Δ steps*"])
    project.runpytest("--golden-update-new-only").assert_outcomes(failed=1)  # new-only never rewrites
    rewritten = project.runpytest("--golden-update")
    rewritten.assert_outcomes(skipped=1)
    rewritten.stdout.fnmatch_lines(["*rewrote*my-linear*", "*CHANGED*steps*"])
    assert _manifest(project)["command"] == "pytest test_user.py::test_linear --golden-update"
    project.runpytest().assert_outcomes(passed=1)


def test_nested_and_tuple_inputs_and_module_objects(project):
    project.makepyfile(test_lstm='''
        import torch
        from torch.ao.nn.quantized.dynamic import LSTM

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = LSTM(3, 5, 1)

            def forward(self, x, hidden: tuple[torch.Tensor, torch.Tensor]):
                return self.lstm(x, hidden)

        def test_lstm(golden):
            torch.manual_seed(0)
            model = Wrapped()
            torch.manual_seed(1)
            inputs = (torch.rand(2, 2, 3), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)))
            results = golden.check("my-lstm", model, inputs, backends=["fbgemm"])
            assert {r.artifact for r in results} == {"state_dict", "scripted", "traced", "model"}

        def test_bare_lstm_cannot_be_scripted_usefully(golden):
            torch.manual_seed(0)
            golden.check("bare-lstm", LSTM(3, 5, 1), torch.rand(2, 2, 3), backends=["fbgemm"])
    ''')
    # the bare LSTM's scripted file does not run once reloaded: asked for, that fails the test, with
    # the reason, in the run that writes and in every run after (never a silent skip)
    project.runpytest("--golden-update-new-only").assert_outcomes(skipped=1, failed=1)
    again = project.runpytest()
    again.assert_outcomes(passed=1, failed=1)
    again.stdout.fnmatch_lines(["*artifact 'scripted' was asked for, but torch * cannot make it: *cannot run it after "
                                "loading*"])
    entry = _manifest(project)["cases"]["bare-lstm"]
    assert "scripted" in entry["skipped_artifacts"] and "cannot run it after loading" in entry["skipped_artifacts"]["scripted"]


# 6. CI mode --------------------------------------------------------------------------------------

def test_ci_environment_detection():
    assert ci_environment({}) is None
    assert ci_environment({"CI": "true"}) == "CI"
    assert ci_environment({"CI": "false"}) is None
    assert ci_environment({"GITHUB_ACTIONS": "true"}) == "GITHUB_ACTIONS"
    assert ci_environment({"JENKINS_URL": "http://x"}) == "JENKINS_URL"


@pytest.mark.parametrize("how", ["env-CI", "env-GITHUB_ACTIONS", "flag"])
def test_ci_mode_refuses_updates_and_writes_nothing(project, monkeypatch, how):
    _user(project)
    args = []
    if how == "flag":
        args.append("--golden-ci")
    else:
        monkeypatch.setenv(how.split("-", 1)[1], "true")
    refused = project.runpytest(*args, "--golden-update")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--golden-update is refused in CI mode*never written in CI*"])
    missing = project.runpytest(*args)
    missing.assert_outcomes(failed=1)
    assert not (project.path / "goldens").exists()
    assert project.runpytest(*args, "--golden-prune").ret == pytest.ExitCode.USAGE_ERROR


# 7. unused goldens --------------------------------------------------------------------------------

TWO = USER_TESTS + textwrap.dedent('''
    def test_second(golden):
        golden.check("second", build, example(), backends=["fbgemm"])
''')


def test_unused_goldens_are_listed_only_for_tests_that_ran(project):
    _user(project, TWO)
    project.runpytest("--golden-update-new-only").assert_outcomes(skipped=2)
    # deselected: its golden is not unused
    deselected = project.runpytest("-k", "test_linear")
    deselected.assert_outcomes(passed=1)
    assert "unused golden" not in deselected.stdout.str()
    # skipped before checking: not unused either
    _user(project, TWO.replace('def test_second(golden):\n', 'def test_second(golden):\n    pytest.skip("later")\n'))
    project.runpytest().assert_outcomes(passed=1, skipped=1)
    assert "unused golden" not in project.runpytest().stdout.str()
    # passed without using it (the id changed): unused
    _user(project, TWO.replace('golden.check("second"', 'golden.check("second-v2"'))
    project.runpytest("--golden-update-new-only")
    listed = project.runpytest("-v")
    listed.stdout.fnmatch_lines(["*1 unused golden(s) and 0 artifact kind(s) no test asks for (remove them: "
                                 "pytest --golden-prune)*",
                                 f"*{_version()}/second: test_user.py::test_second passed without using it*"])
    assert "second" in _manifest(project)["cases"]


def test_removed_test_orphans_its_golden_and_prune_removes_it(project):
    _user(project, TWO)
    project.runpytest("--golden-update-new-only").assert_outcomes(skipped=2)
    _user(project)  # test_second deleted
    listed = project.runpytest("-v")
    listed.stdout.fnmatch_lines([f"*{_version()}/second: test_user.py::test_second no longer exists*"])
    assert (project.path / "goldens" / _version() / "second").exists()
    pruned = project.runpytest("--golden-prune")
    pruned.stdout.fnmatch_lines(["*pruned 1 unused golden(s)*second*"])
    manifest = _manifest(project)
    assert "second" not in manifest["cases"] and not any(f.startswith("second/") for f in manifest["files"])
    assert not (project.path / "goldens" / _version() / "second").exists()
    project.runpytest().assert_outcomes(passed=1)


# 8. xdist ------------------------------------------------------------------------------------------

MANY = USER_TESTS + "".join(
    f'\ndef test_many_{i}(golden):\n    golden.check("many-{i}", build, example(), backends=["fbgemm"])\n'
    for i in range(6))


def test_xdist_writes_from_workers_are_safe_and_outcomes_match_serial(project, tmp_path):
    _user(project, MANY)
    wrote = project.runpytest_subprocess("-n", "2", "--golden-update-new-only", "-p", "no:cacheprovider")
    wrote.assert_outcomes(skipped=7)
    assert set(_manifest(project)["cases"]) == {"my-linear", *(f"many-{i}" for i in range(6))}
    from harness.goldens.sealing import verify

    verified, findings = verify(project.path / "goldens")  # no write interleaved with another
    assert not findings and verified == len(_manifest(project)["files"])
    serial_report, parallel_report = tmp_path / "serial.json", tmp_path / "parallel.json"
    serial = project.runpytest_subprocess(f"--golden-report={serial_report}", "-p", "no:cacheprovider")
    parallel = project.runpytest_subprocess("-n", "2", f"--golden-report={parallel_report}", "-p", "no:cacheprovider")
    serial.assert_outcomes(passed=7)
    parallel.assert_outcomes(passed=7)
    key = lambda r: (r["test"], r["case"], r["artifact"], r["backend"], r["verdict"], r["max_abs_diff"])
    s, p = json.loads(serial_report.read_text()), json.loads(parallel_report.read_text())
    # 3 stored artifacts + today's model, per backend: 2 backends for my-linear, 1 for each many-i
    assert sorted(map(key, s)) == sorted(map(key, p)) and len(s) == 4 * 2 + 4 * 6
    # only the controller prints the summary
    assert parallel.stdout.str().count("golden summary") == 1


#: a slice of the catalog's cases for the README's tier: every flow and kind but the real models
XDIST_SLICE = ("linear_dynamic-qint8 or conv2d_graph_v3 or per_tensor_observer or qat-linear_relu or fx-mlp-ref or "
               "pt2e-ptq-linear or ondevice-linear-per_channel or linear_relu_package or dyn-lstm or jit-mlp-dynamic")


@pytest.mark.parametrize("select", [pytest.param(["-k", XDIST_SLICE], id="slice"),
                                    pytest.param([], id="whole-catalog", marks=pytest.mark.slow)])
def test_xdist_catalog_run_matches_serial(pytester, full_store, tmp_path, catalog, select):
    args = ["--golden", f"--golden-dir={full_store}", f"--golden-fixtures={FIXTURES}", "-p", "no:cacheprovider",
            *select]
    serial = pytester.runpytest_subprocess(*args, f"--golden-report={tmp_path / 's.json'}")
    parallel = pytester.runpytest_subprocess(*args, "-n", "2", "-v", f"--golden-report={tmp_path / 'p.json'}")
    # warnings are counted per process, not per test; xdist's controller does not count deselections
    outcomes = lambda run: {k: v for k, v in run.parseoutcomes().items() if k not in ("warnings", "seconds", "deselected")}
    assert outcomes(serial) == outcomes(parallel)
    # the plugin's scheduler: every item of a case (all versions, artifacts, backends) on one worker
    workers: dict = {}
    for line in parallel.outlines:
        found = re.search(r"\[(gw\d+)\].*golden-catalog::([^\[\s]+)\[", line)
        if found:
            workers.setdefault(found[2], set()).add(found[1])
    assert len(workers) > 8 and all(len(w) == 1 for w in workers.values()), workers
    assert len(set().union(*workers.values())) == 2  # and both workers had cases
    key = lambda r: (r["case"], r["artifact"], r["backend"], r["verdict"])
    s = json.loads((tmp_path / "s.json").read_text())
    p = json.loads((tmp_path / "p.json").read_text())
    assert sorted(map(key, s)) == sorted(map(key, p))
    if not select:
        assert {r["case"] for r in s} == {c.id for c in catalog}
    assert len({r["case"] for r in s}) > 8 and serial.parseoutcomes().get("failed", 0) == 0


# 9. summary and report -------------------------------------------------------------------------------

def test_summary_table_and_json_report(project, tmp_path):
    _user(project)
    project.runpytest("--golden-update-new-only")
    report = tmp_path / "golden.json"
    result = project.runpytest(f"--golden-report={report}")
    result.stdout.fnmatch_lines(["*golden summary*", "*golden*backend*pass*", f"*{_version()}*fbgemm*4*",
                                 f"*{_version()}*qnnpack*4*"])
    records = json.loads(report.read_text())
    assert len(records) == 8 and {r["verdict"] for r in records} == {"pass"}
    assert {r["artifact"] for r in records} == {"state_dict", "scripted", "traced", "model"}
    fields = {"case", "artifact", "backend", "golden_version", "runtime_version", "verdict", "max_abs_diff",
              "max_step_diff", "mismatched", "total", "message"}
    assert fields <= set(records[0]) and records[0]["test"] == "test_user.py::test_linear"


# 10. markers --------------------------------------------------------------------------------------------

def test_golden_marker_is_registered_and_applies(project):
    project.makepyfile(test_marked='''
        import pytest, torch
        from test_user import build, example

        @pytest.mark.golden(min_torch="99.0")
        def test_future(golden):
            golden.check("future", build, example())

        @pytest.mark.golden(backends=["fbgemm"])
        def test_fbgemm_only(golden):
            results = golden.check("fbgemm-only", build, example())
            assert {r.backend for r in results} == {"fbgemm"}
    ''')
    _user(project)
    project.runpytest("--strict-markers", "--golden-update-new-only", "test_marked.py").assert_outcomes(skipped=2)
    result = project.runpytest("--strict-markers", "-rs", "test_marked.py")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*golden future needs torch >= 99.0*"])
    assert set(_manifest(project)["cases"]["fbgemm-only"]["backends"]) == {"fbgemm"}


def test_known_drift_is_an_xfail_with_its_reason(pytester, catalog_args, full_store, version):
    import torch

    from harness.goldens.safeload import save_bytes

    name = "linear_dynamic-qint8/expected.fbgemm.pt"
    golden = torch.load(full_store / version / name, weights_only=True)
    _vouch(full_store, version, name, save_bytes(golden + 1e-3))
    (full_store / "known-drifts.toml").write_text(
        f'[[drift]]\ngolden = "{version}"\ncase = "linear_dynamic-qint8"\nbackend = "fbgemm"\n'
        'max_abs_diff = 2e-3\nreason = "examined: a test of known drifts"\n')
    result = pytester.runpytest(*catalog_args, "-k", "linear_dynamic-qint8 and fbgemm", "-rx")
    result.assert_outcomes(xfailed=3)
    result.stdout.fnmatch_lines(["*known drift: examined: a test of known drifts*"])
    (full_store / "known-drifts.toml").write_text(
        f'[[drift]]\ngolden = "{version}"\ncase = "linear_dynamic-qint8"\nmax_abs_diff = 1e-4\nreason = "too small"\n')
    pytester.runpytest(*catalog_args, "-k", "linear_dynamic-qint8 and fbgemm").assert_outcomes(failed=3)


def test_a_directory_named_like_no_torch_version_fails_the_catalog_run(pytester, store, version):
    shutil.copytree(store / version, store / "latest")
    run = pytester.runpytest_subprocess("--golden", f"--golden-dir={store}", f"--golden-fixtures={FIXTURES}",
                                        "-k", "stray-directory", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines([f"*{store / 'latest'} is not named like a golden set*"])


def test_golden_shards_split_the_catalog_run_into_disjoint_parts(pytester, store, tmp_path):
    args = ["--golden", f"--golden-dir={store}", f"--golden-fixtures={FIXTURES}", "-p", "no:cacheprovider",
            "-k", "linear_dynamic or lstm or observer"]  # cases of the store (SLICE), and a few without goldens
    pytester.runpytest_subprocess(*args, f"--golden-report={tmp_path / 'all.json'}")
    key = lambda r: (r["golden_version"], r["case"], r["artifact"], r["backend"])
    whole = {key(r): r["verdict"] for r in json.loads((tmp_path / "all.json").read_text())}
    parts = []
    for k in (1, 2, 3):
        run = pytester.runpytest_subprocess(*args, f"--golden-shard={k}/3", f"--golden-report={tmp_path / f'{k}.json'}")
        assert run.parseoutcomes().get("deselected", 0) > 0
        parts.append(json.loads((tmp_path / f"{k}.json").read_text()))
    keys = [key(r) for part in parts for r in part]
    assert all(parts) and len(keys) == len(set(keys)) == len(whole)
    assert {key(r): r["verdict"] for part in parts for r in part} == whole
    bad = pytester.runpytest_subprocess(*args, "--golden-shard=4/3")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--golden-shard: shard '4/3' needs 1 <= K <= N*"])


def test_float_rounding_passes_shown_in_the_summary_and_golden_exact_fails_it(pytester, catalog_args, full_store,
                                                                                 version, tmp_path):
    import torch

    from harness.compare import ulp_of_largest
    from harness.goldens.safeload import save_bytes

    name = "linear_dynamic-qint8/expected.fbgemm.pt"
    golden = torch.load(full_store / version / name, weights_only=True)
    moved = golden.clone()
    moved.view(-1)[0] += 2 * ulp_of_largest(golden)
    _vouch(full_store, version, name, save_bytes(moved))
    select = ["-k", "linear_dynamic-qint8 and fbgemm"]
    result = pytester.runpytest(*catalog_args, *select, f"--junitxml={tmp_path / 'junit.xml'}")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*golden*backend*rounding*", "*Float rounding, shown and not failing*",
                                 "*3 results in 1 case, at most 2 ulps*"])
    assert 'name="golden-rounding"' in (tmp_path / "junit.xml").read_text()
    exact = pytester.runpytest(*catalog_args, *select, "--golden-exact")
    exact.assert_outcomes(failed=3)
    exact.stdout.fnmatch_lines(["*beyond the rounding bound of 0*"])
    bad = pytester.runpytest(*catalog_args, *select, "--golden-exact", "--golden-rounding-ulps=4")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_a_kind_dropped_from_a_case_is_missing_in_the_plugin_as_in_the_cli(pytester, catalog_args, full_store,
                                                                            version, tmp_path):
    """The golden count guard is one rule both doors call: a manifest that promises an artifact kind
    the catalog's case no longer has gives the same missing result, message included."""
    from .conftest import run_cli

    path = full_store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["cases"]["linear_dynamic-qint8"]["artifacts"].append("export")
    path.write_text(json.dumps(manifest))
    report = tmp_path / "plugin.json"
    result = pytester.runpytest(*catalog_args, "--golden-backend", "fbgemm", "-k", "linear_dynamic-qint8",
                                f"--golden-report={report}")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*linear_dynamic-qint8?export-fbgemm-from-{version}?*",
                                 "*promises this result, but case 'linear_dynamic-qint8' no longer has the export "
                                 "artifact*"])
    cli = tmp_path / "cli.json"
    run_cli("bc-harness", "replay", "--goldens", full_store, "--fixtures", FIXTURES, "--backend", "fbgemm",
            "-k", "linear_dynamic-qint8", "--json", cli, check=1)
    key = ("case", "artifact", "backend", "golden_version", "verdict", "message")
    plugin_records = sorted(tuple(r[k] for k in key) for r in json.loads(report.read_text()))
    cli_records = sorted(tuple(r[k] for k in key) for r in json.loads(cli.read_text()))
    assert plugin_records == cli_records and ("linear_dynamic-qint8", "export", "fbgemm") in [r[:3] for r in cli_records]
