"""Finding the project: its golden directory and fixtures, from flags, pyproject.toml or the checkout."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """The golden or fixtures directory cannot be found; a usage error."""


@dataclass
class Paths:
    goldens: Path
    fixtures: Path


def _project_config(start: Path) -> tuple[Path, dict] | None:
    """The nearest pyproject.toml at or above ``start`` with a [tool.bc-harness] table."""
    for directory in [start, *start.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                continue
            table = data.get("tool", {}).get("bc-harness")
            if isinstance(table, dict):
                return directory, table
    return None


#: the variables CI services set; any one set (and not "0", "false", "no", "off") is a CI run
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "TF_BUILD", "TEAMCITY_VERSION", "BITBUCKET_BUILD_NUMBER", "APPVEYOR", "CODEBUILD_BUILD_ID",
                "DRONE", "SEMAPHORE", "BUILD_BUILDID")
_FALSE = ("", "0", "false", "no", "off")


def ci_environment(environ=None) -> str | None:
    """The CI variable that is set, or None on a developer's machine."""
    environ = os.environ if environ is None else environ
    for name in CI_VARIABLES:
        if environ.get(name, "").strip().lower() not in _FALSE:
            return name
    return None


def cache_home() -> Path:
    """The harness's own directory of the user's cache: other releases' environments, kept results."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bc-harness"


DEFAULTS = {"goldens": "serialized", "fixtures": "fixtures"}


def configured(start: Path, key: str) -> Path | None:
    """``key`` ("goldens" or "fixtures") of the nearest [tool.bc-harness] table at or above ``start``."""
    found = _project_config(start)
    if found is None:
        return None
    base, table = found
    value = table.get(key, DEFAULTS[key])
    return base / value if isinstance(value, str) and value else None


def operators(start: Path) -> frozenset:
    """``operators`` of the nearest [tool.bc-harness] table: the project's additions to the operator
    allowlist (harness.goldens.operators), as ``namespace::name`` or, for TorchScript methods, bare names.
    The project's configuration, not the golden directory's: a golden cannot extend it."""
    found = _project_config(start)
    value = found[1].get("operators", []) if found else []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("operators of [tool.bc-harness] must be a list of strings")
    from harness.goldens.operators import forbidden

    refused = [v for v in value if forbidden(v)]
    if refused:
        raise ConfigError(f"operators of [tool.bc-harness]: {refused[0]} {forbidden(refused[0])}; it is never allowed")
    return frozenset(value)


def resolve(goldens: str | None = None, fixtures: str | None = None, cwd: Path | None = None) -> Paths:
    """Flags win; then [tool.bc-harness] of the nearest pyproject.toml. Nothing else: the
    harness's own checkout is never a default, so a user's run never reads or writes its store."""
    cwd = Path.cwd() if cwd is None else cwd

    def pick(flag, key):
        if flag:
            return Path(flag)
        path = configured(cwd, key)
        if path is None:
            raise ConfigError(
                f"cannot find the {key} directory: pass --{key} DIR, or run inside a project whose "
                f"pyproject.toml has a [tool.bc-harness] table ({key} = \"{DEFAULTS[key]}\" is the default)"
            )
        return path
    return Paths(goldens=pick(goldens, "goldens"), fixtures=pick(fixtures, "fixtures"))
