"""What the fault tests share beyond tests/conftest.py."""

import pytest


@pytest.fixture
def outside_ci(monkeypatch):
    """A plugin session that writes or prunes must run outside CI mode; CI sets CI=true for the
    whole suite, so such a test clears every CI variable the plugin reads, for itself only."""
    from harness.pytest_plugin import CI_VARIABLES

    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
