"""The README's two set-up commands are the ones CI runs."""

import re

from .conftest import REPO


def _commands():
    return re.findall(r"```sh\n(python3 -m venv .*)\n```", (REPO / "README.md").read_text())


def test_readme_has_the_two_setup_commands_and_ci_runs_both():
    commands = _commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.endswith("bc-harness replay") and "torch==2.13.0" in main_job
    assert "pytest" in tests and "torch==2.13.0" in tests and "[test]" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci
    assert main_job in ci  # CI adds -q after it: the same command, a shorter print
