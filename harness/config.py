"""Finding the project: its golden directory and fixtures, from flags, pyproject.toml or the checkout."""

from __future__ import annotations

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


def _checkout_root() -> Path | None:
    """The source checkout this harness runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "fixtures").is_dir() and (root / "pyproject.toml").is_file() else None


def resolve(goldens: str | None = None, fixtures: str | None = None, cwd: Path | None = None) -> Paths:
    """Flags win; then [tool.bc-harness] of the nearest pyproject.toml; then this checkout."""
    cwd = Path.cwd() if cwd is None else cwd
    found = _project_config(cwd)
    base, table = found if found else (_checkout_root(), {})
    def pick(flag, key):
        if flag:
            return Path(flag)
        if base is None:
            raise ConfigError(
                f"cannot find the {key} directory: pass --{key} DIR, or run inside a project whose "
                "pyproject.toml has a [tool.bc-harness] table"
            )
        return base / table.get(key, "serialized" if key == "goldens" else "fixtures")
    return Paths(goldens=pick(goldens, "goldens"), fixtures=pick(fixtures, "fixtures"))
