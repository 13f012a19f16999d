"""Command line: bc-harness (replay, bisect, window, verify, pin, seal, report, cases, diff-backends, migrate) and regenerate-goldens.

Exit status: 0 nothing failed, 1 some result failed (or a golden would be overwritten),
2 a usage error. No traceback reaches the user unless --verbose. Each command is a module of
this package; ``common`` holds what they share.
"""

from __future__ import annotations

import argparse

from harness.backends import known
from harness.goldens.layout import LAYOUTS
from harness.cli import commands
from harness.cli.commands import catalog_markdown
from harness.cli.bisect import bisect, window
from harness.cli.common import Parser, common_flags, rounding_flags, run, trust_flag
from harness.cli.regenerate import regenerate
from harness.cli.replay import replay

__all__ = ["build_parser", "catalog_markdown", "main", "regenerate_main", "regenerate_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bc-harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="replay goldens with the installed torch and judge them")
    common_flags(replay)
    replay.add_argument("directory", nargs="?", metavar="DIR",
                        help="the golden store (default: the configured one; a plugin's golden directory too); "
                             "with --layout pytorch: the flat directory of PyTorch's files")
    replay.add_argument("--layout", choices=tuple(LAYOUTS), default="harness")
    replay.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                        help=f"only this backend ({', '.join(known())}); repeatable")
    replay.add_argument("--json", metavar="FILE", help="write one JSON record per result")
    replay.add_argument("--trust-unverified", action="store_true",
                        help="load code-carrying files that no manifest vouches for (unsafe)")
    trust_flag(replay)
    replay.add_argument("-q", "--quiet", action="store_true", help="no table, only problems and the summary")
    replay.add_argument("-v", "--every-row", action="store_true",
                        help="a row per (golden, case, artifact) and every reason, known and skipped ones too "
                             "(default: counts per golden version and backend, then what needs attention)")
    replay.add_argument("--golden", dest="versions", action="append", metavar="VERSION",
                        help="only the golden set of this torch version; repeatable")
    replay.add_argument("--no-forward", action="store_true",
                        help="do not replay goldens of newer torch versions (forward compatibility)")
    replay.add_argument("-j", "--jobs", type=int, metavar="N", default=None,
                        help="replay in N worker processes (default: one per core, when the recorded "
                             "costs say the work outweighs starting them)")
    replay.add_argument("--shard", metavar="K/N",
                        help="replay only shard K of N: a deterministic split balanced by replay-costs.json")
    replay.add_argument("--result-timeout", type=float, metavar="SECONDS", default=600.0,
                        help="a result whose loading and running takes longer is stopped and judged a crash "
                             "(default: 600; 0: no limit)")
    replay.add_argument("--record-costs", action="store_true",
                        help="write each (version, case)'s seconds into replay-costs.json beside the goldens "
                             "(replays every unit)")
    replay.add_argument("--no-cache", action="store_true",
                        help="replay every unit, neither reading nor writing the result cache (a CI run never "
                             "uses it; see docs/benchmarks.md)")
    rounding_flags(replay)

    bis = sub.add_parser("bisect", help="the first torch release where a golden's result changed, replaying "
                                        "the releases in between, each in its cached environment")
    bis.add_argument("case", metavar="CASE", help="a case id of the catalog")
    bis.add_argument("--golden", metavar="VERSION",
                     help="the golden set (default: the newest whose result changed on the bad release)")
    bis.add_argument("--good", metavar="VERSION", help="a release where it holds (default: the golden's own)")
    bis.add_argument("--bad", metavar="VERSION", help="a release where it changed (default: the running torch)")
    bis.add_argument("--library", metavar="NAME",
                     help="bisect a stack library's releases on the running torch, each installed "
                          "beside it; --good/--bad are that library's releases (default: the golden's, the installed)")
    bis.add_argument("--verify-good", action="store_true",
                     help="replay on the golden's own release too, rather than assume it holds there")
    bis.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                     help=f"only this backend ({', '.join(known())}); repeatable")
    bis.add_argument("--artifact", dest="artifacts", action="append", metavar="KIND",
                     help="only this artifact kind (state_dict, scripted, ...); repeatable")
    bis.add_argument("--goldens", metavar="DIR", help="golden directory (default: the configured one)")
    bis.add_argument("--fixtures", metavar="DIR", help="case catalog directory (default: the configured one)")
    bis.add_argument("--verbose", action="store_true", help="print tracebacks of errors")

    win = sub.add_parser("window", help="a stack library's compatibility window: the goldens each of its releases "
                                        "made, replayed on each release from that one on, per backend")
    win.add_argument("library", metavar="LIBRARY", help="a stack's library (the one whose runtime replays its files)")
    win.add_argument("--runtime", action="append", metavar="RELEASE",
                     help="replay on this release (default: every release that made goldens, and the installed one); "
                          "repeatable")
    win.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                     help=f"only this backend ({', '.join(known())}); repeatable")
    win.add_argument("--goldens", metavar="DIR", help="golden directory (default: the configured one)")
    win.add_argument("--fixtures", metavar="DIR", help="case catalog directory (default: the configured one)")
    win.add_argument("--verbose", action="store_true", help="print tracebacks of errors")

    pin = sub.add_parser("pin", help="record sha256 checksums of a foreign golden directory")
    pin.add_argument("directory", metavar="DIR")
    pin.add_argument("--torch", metavar="VERSION", help="the torch version that made the files, if known")
    pin.add_argument("--fixtures", metavar="DIR", help=argparse.SUPPRESS)
    trust_flag(pin)

    seal = sub.add_parser("seal", help="record the golden count and code sidecars of sets written before them")
    seal.add_argument("versions", nargs="*", metavar="VERSION", help="the golden sets to seal (default: all)")
    seal.add_argument("--goldens", metavar="DIR", help="the golden store (default: the configured one)")
    seal.add_argument("--fixtures", metavar="DIR", help=argparse.SUPPRESS)
    trust_flag(seal)

    report = sub.add_parser("report", help="merge replay JSON files into one matrix (HTML and/or Markdown)")
    report.add_argument("results", nargs="+", metavar="JSON",
                        help="files written by replay --json or pytest --golden-report (and install-<row>.json of rows "
                             "that did not install), "
                             "or directories holding them")
    report.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    report.add_argument("--md", metavar="FILE", help="write Markdown")

    diff = sub.add_parser("diff-backends",
                          help="each backend's distance to the reference kernels, case by case")
    common_flags(diff)
    diff.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                      help=f"only this backend ({', '.join(known())}); repeatable")
    diff.add_argument("--markdown", action="store_true",
                      help="print the per-case table docs/reference.md carries (each backend's distance, or why none)")

    mig = sub.add_parser("migrate", help="each legacy case against its successors (the stacks' PT2E programs and configs), made "
                                         "from the same float model: distances in steps, per backend",
                         description="Migration parity: for each case of a legacy flow in the case catalog, its successors "
                                     "made from the same float model and calibration data, and the distances between "
                                     "legacy, successor and float outputs in steps (docs/migration.md).")
    common_flags(mig)
    mig.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                     help="only this torch backend for the legacy models; repeatable")
    mig.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="cases measured at once (default 1)")
    mig.add_argument("--json", metavar="FILE", help="write one record per row")
    mig.add_argument("--markdown", action="store_true", help="print the tables docs/migration.md carries")

    verify = sub.add_parser("verify", help="check every golden file against its manifest; list unknown files")
    verify.add_argument("directory", nargs="?", metavar="DIR", help="the golden store (default: the configured one)")
    verify.add_argument("--goldens", metavar="DIR", help=argparse.SUPPRESS)
    verify.add_argument("--fixtures", metavar="DIR",
                        help="the case catalog whose modules a torch.package golden's interned source must match "
                             "(default: the configured one; without one, such goldens are refused)")
    verify.add_argument("--verbose", action="store_true", help="also list the files this install cannot load")
    trust_flag(verify)

    cases = sub.add_parser("cases", help="list the case catalog")
    common_flags(cases)
    cases.add_argument("--markdown", action="store_true",
                       help="print the catalog as the Markdown block docs/catalog.md carries")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"replay": replay, "bisect": bisect, "window": window, "pin": commands.pin, "cases": commands.cases, "report": commands.report,
               "diff-backends": commands.diff_backends, "migrate": commands.migrate, "verify": commands.verify, "seal": commands.seal}[args.command]
    return run("bc-harness", command, args)


def regenerate_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="regenerate-goldens",
        description="Generate goldens for the installed torch into serialized/<torch release>/.",
    )
    common_flags(parser)
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing goldens, after printing what changed numerically")
    parser.add_argument("--torch", metavar="VERSION",
                        help="generate with this torch release, in a cached isolated environment "
                             "(torch from the package registry; this checkout's harness)")
    return parser


def regenerate_main(argv: list[str] | None = None) -> int:
    args = regenerate_parser().parse_args(argv)
    return run("regenerate-goldens", regenerate, args)
