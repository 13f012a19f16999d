"""What every command shares: usage errors as one line, the common flags, the catalog and backends."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.catalog import ROUNDING_ULPS

USAGE_ERROR = 2


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def readable_dir(path: Path, what: str = "") -> Path:
    """``path`` if it is a directory this process can list; otherwise a UsageError saying why."""
    label = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise UsageError(f"{label} does not exist")
    if not path.is_dir():
        raise UsageError(f"{label} is not a directory")
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror or exc}") from exc
    return path


def common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--goldens", metavar="DIR",
                        help="golden directory (default: [tool.bc-harness] goldens, or serialized/)")
    parser.add_argument("--fixtures", metavar="DIR",
                        help="case catalog directory (default: [tool.bc-harness] fixtures, or fixtures/)")
    parser.add_argument("-k", dest="patterns", action="append", metavar="PATTERN",
                        help="only cases whose id contains PATTERN or matches it as a glob; repeatable")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of errors")


def trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-goldens", action="store_true",
                        help="for this run, load goldens that carry code beyond the allowlists (a pickle "
                             "naming other globals, a package with other sources or externs); only for "
                             "goldens whose origin you trust")


def rounding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exact", action="store_true",
                        help="float outputs must be bit-exact: a float rounding difference fails as a drift")
    parser.add_argument("--rounding-ulps", type=int, metavar="N",
                        help=f"float rounding bound for every case, in ulps of each output's largest magnitude "
                             f"(default: each case's own, {ROUNDING_ULPS} unless it says otherwise)")


def catalog(args, optional: bool = False):
    """(paths, the selected cases). ``optional``: a golden store of pytest tests' own goldens needs
    no catalog, so where none is configured the cases are none and ``paths.fixtures`` is None."""
    from harness.catalog import CatalogError, load_catalog, select
    from harness.config import ConfigError, Paths, resolve

    try:
        paths = resolve(args.goldens, args.fixtures)
        cases = load_catalog(paths.fixtures)
    except (ConfigError, CatalogError) as exc:
        if optional and not args.fixtures and "fixtures" in str(exc):
            from harness.config import configured

            goldens = Path(args.goldens) if args.goldens else configured(Path.cwd(), "goldens")
            if goldens is not None:
                return Paths(goldens=goldens, fixtures=None), []
        raise UsageError(str(exc)) from exc
    chosen = select(cases, args.patterns)
    if args.patterns and not chosen:
        raise UsageError(f"no case matches -k {' -k '.join(args.patterns)}")
    return paths, chosen


def backends(args) -> list[str] | None:
    """The backends a command was given (each once), checked as every replay's are."""
    from harness.replaying.request import CLI, RequestError, RunRequest

    try:
        return RunRequest(CLI, backends=args.backends).check().backends
    except RequestError as exc:
        raise UsageError(str(exc)) from None


def run(prog: str, command, args) -> int:
    """Run a command; usage errors become one line and exit 2, never a traceback."""
    try:
        return command(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
