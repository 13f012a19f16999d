"""A crash is a finding: a golden whose loading or running kills the process is a ``crash`` result,
and the replay, the regeneration and the test run go on; a hang is stopped and reported alike.

The crashing golden is a real one: a catalog case whose model kills its own process (SIGSEGV)
under one backend once a file beside the fixture says so, so that its goldens are made cleanly
first. The same comes from torch itself on an AVX512 CPU (fixtures/native_crashes.py).
"""

from __future__ import annotations

import json
import signal
import textwrap

import pytest

from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.sandbox import Crashed, Sandbox
from harness.goldens.store import GoldenStore

from .conftest import run_cli
from .native import NativeCrash, native

CRASHY = textwrap.dedent('''
    """Cases whose model crashes (or hangs) under the backend named in the file ``armed`` beside it."""
    import os
    import signal
    import time
    from pathlib import Path

    import torch

    from harness.catalog import Case, FloatInput

    ARMED = Path(__file__).with_name("armed")


    class Fragile(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 3)))

        def forward(self, x):
            if ARMED.exists():
                how, _, backend = ARMED.read_text().strip().partition(" ")
                if torch.backends.quantized.engine == backend:
                    if how == "hang":
                        time.sleep(3600)
                    os.kill(os.getpid(), signal.SIGSEGV)
            return self.body(x)


    def build():
        torch.manual_seed(0)
        return Fragile()


    CASES = [Case("fragile", build, FloatInput((2, 4)), ("state_dict",), flow="dynamic"),
             Case("steady", build, FloatInput((2, 4)), ("state_dict",), flow="dynamic", seed=1)]
''')


@pytest.fixture(scope="module")
def fragile_store(tmp_path_factory):
    """(fixtures, store) with goldens of the fragile cases, made before anything is armed."""
    root = tmp_path_factory.mktemp("fragile")
    fixtures = root / "fixtures"
    fixtures.mkdir()
    (fixtures / "fragile.py").write_text(CRASHY)
    run_cli("regenerate-goldens", "--goldens", root / "serialized", "--fixtures", fixtures, check=0, process=True)
    return fixtures, root / "serialized"


@pytest.fixture
def armed(fragile_store):
    fixtures, store = fragile_store
    flag = fixtures / "armed"

    def arm(how: str, backend: str):
        flag.write_text(f"{how} {backend}")

    yield arm
    flag.unlink(missing_ok=True)


def _replay(fixtures, store, jobs=1, **options):
    from harness.catalog import load_catalog

    return list(replay_store(GoldenStore(store), load_catalog(fixtures), Options(**options), jobs=jobs,
                             fixtures=fixtures))


def _key(r):
    return (r.case, r.artifact, r.backend)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_golden_that_crashes_its_replay_is_one_crash_and_every_other_result_is_as_before(fragile_store, armed, jobs):
    fixtures, store = fragile_store
    before = {_key(r): r.verdict for r in _replay(fixtures, store, jobs)}
    assert set(before.values()) == {"pass"}
    armed("crash", "qnnpack")
    after = _replay(fixtures, store, jobs)
    crashed = [r for r in after if r.verdict == "crash"]
    assert [_key(r) for r in crashed] == [("fragile", "state_dict", "qnnpack"), ("steady", "state_dict", "qnnpack")]
    assert {_key(r): r.verdict for r in after if r.verdict != "crash"} == {
        k: v for k, v in before.items() if k[2] != "qnnpack"}
    [first, _] = crashed
    assert "SIGSEGV (signal 11)" in first.message and "under qnnpack" in first.message
    assert first.golden_version and first.failed
    from harness import machine

    assert first.runtime_machine == machine.describe(machine.current())  # which CPU crashed is half the finding


def test_the_command_reports_a_crash_exits_1_and_writes_it_to_json(fragile_store, armed, tmp_path):
    fixtures, store = fragile_store
    armed("crash", "x86")
    out = run_cli("bc-harness", "replay", "--goldens", store, "--fixtures", fixtures, "--json", tmp_path / "r.json",
                  check=1, process=True)
    assert "FAILED: 8 results: 6 pass, 2 crash" in out.stdout
    assert "fragile [state_dict] [x86]: the process replaying it died: SIGSEGV (signal 11)" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    records = [r for r in json.loads((tmp_path / "r.json").read_text()) if r["verdict"] == "crash"]
    assert len(records) == 2 and all(r["runtime_machine"] for r in records)


def test_a_known_crash_names_its_cpus_and_covers_only_machines_like_them(fragile_store, armed):
    from harness import machine
    from harness.goldens.known import load

    fixtures, store = fragile_store
    armed("crash", "qnnpack")
    flag = machine.current()["isa"][0] if machine.current()["isa"] else None
    entry = textwrap.dedent('''
        [[crash]]
        golden = "*"
        case = "fragile"
        backend = "qnnpack"
        message = "SIGSEGV"
        isa = {isa}
        seen_on = ["the CI machine"]
        reason = "the fragile case kills itself under qnnpack."
    ''')
    known_file = store / "known-drifts.toml"
    try:
        known_file.write_text(entry.format(isa=json.dumps([flag] if flag else [])))
        results = _replay(fixtures, store, known=load(store))
        fragile = next(r for r in results if _key(r) == ("fragile", "state_dict", "qnnpack"))
        steady = next(r for r in results if _key(r) == ("steady", "state_dict", "qnnpack"))
        assert fragile.verdict == "crash" and not fragile.failed and "Seen on: the CI machine." in fragile.known
        assert steady.failed  # another case's crash is not this entry's
        known_file.write_text(entry.format(isa='["a-flag-no-cpu-has"]'))
        elsewhere = next(r for r in _replay(fixtures, store, known=load(store))
                         if _key(r) == ("fragile", "state_dict", "qnnpack"))
        assert elsewhere.failed and elsewhere.known is None
    finally:
        known_file.unlink(missing_ok=True)


def test_a_known_crash_without_the_cpus_it_was_seen_on_is_refused(tmp_path):
    from harness.goldens.known import KnownDriftError, load

    (tmp_path / "known-drifts.toml").write_text('[[crash]]\ngolden = "*"\ncase = "x"\nmessage = "SIGSEGV"\n'
                                                'reason = "r"\n')
    with pytest.raises(KnownDriftError, match="seen_on"):
        load(tmp_path)


def test_a_hanging_result_is_stopped_after_the_timeout_and_is_a_crash(fragile_store, armed):
    fixtures, store = fragile_store
    armed("hang", "onednn")
    results = _replay(fixtures, store, result_timeout=5)
    hung = [r for r in results if r.verdict == "crash"]
    assert [_key(r) for r in hung] == [("fragile", "state_dict", "onednn"), ("steady", "state_dict", "onednn")]
    assert "no answer within 5 s (hung): stopped" in hung[0].message
    assert sum(r.verdict == "pass" for r in results) == 6


def test_regeneration_records_the_backend_that_crashes_and_makes_the_rest(fragile_store, armed, tmp_path):
    fixtures, _ = fragile_store
    armed("crash", "qnnpack")
    out = run_cli("regenerate-goldens", "--goldens", tmp_path / "goldens", "--fixtures", fixtures, check=0, process=True)
    assert "qnnpack crashed" in out.stdout
    entry = json.loads((tmp_path / "goldens").glob("*/manifest.json").__next__().read_text())["cases"]["fragile"]
    assert entry["backends"]["qnnpack"].startswith("qnnpack crashed running it on the machine that made the golden: "
                                                   "SIGSEGV (signal 11)")
    assert entry["backends"]["fbgemm"] == "ok" and entry["artifacts"] == ["state_dict"]


def test_a_catalog_item_that_crashes_fails_alone_and_the_session_goes_on(fragile_store, armed, pytester, outside_ci):
    fixtures, store = fragile_store
    armed("crash", "qnnpack")
    result = pytester.runpytest("--golden", f"--golden-dir={store}", f"--golden-fixtures={fixtures}",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(["*golden 2.* · fragile · state_dict · qnnpack: crash — the process replaying it died: "
                                 "SIGSEGV (signal 11)*", "on *known-drifts.toml with the CPUs it was seen on*"])


CRASHING_TESTS = textwrap.dedent('''
    import os
    import signal

    def test_before():
        pass

    def test_crashes():
        os.kill(os.getpid(), signal.SIGSEGV)

    def test_after():
        pass
''')


def test_a_crashed_xdist_worker_ends_the_run_names_the_test_and_reports_the_rest(generated_store, pytester, outside_ci):
    """xdist's scope scheduling, which the plugin's case scheduler builds on, waited forever for work
    after a worker crashed (pytest-dev/pytest-xdist#1378); now the crash is one failure and the run
    ends with every other test reported."""
    from .conftest import FIXTURES

    pytester.makepyfile(test_crash=CRASHING_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "--golden", f"--golden-dir={generated_store}",
                                           f"--golden-fixtures={FIXTURES}", "-k", "linear_dynamic or test_",
                                           "-p", "no:cacheprovider", timeout=300)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 'test_crash.py::test_crashes'*"])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["passed"] >= 2 + 12, outcomes
    assert result.ret == 1


def test_a_native_call_that_crashes_fails_as_native_crash_and_the_next_call_runs():
    with pytest.raises(NativeCrash, match=r"_kill_self\(\) crashed the process that ran it: SIGSEGV \(signal 11\)"):
        native(_kill_self)
    assert native(abs, -3) == 3


def _kill_self():
    import os

    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_sandbox_request_left_half_read_does_not_answer_the_next_one():
    box = Sandbox(timeout=60)
    try:
        stream = box.stream("harness.sandbox:_call", (sorted, ([3, 1, 2],)))
        assert next(stream) == [1, 2, 3]  # its end is never read
        assert box.call(max, [4, 9]) == 9
        with pytest.raises(Crashed) as crash:
            box.call(_kill_self)
        assert crash.value.cause == "SIGSEGV (signal 11)" and box.crashes == 1
        assert box.call(min, [4, 9]) == 4
    finally:
        box.close()
