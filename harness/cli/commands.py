"""The smaller ``bc-harness`` commands: verify, pin, seal, report, cases and diff-backends."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from harness.cli.common import UsageError, backends, catalog, readable_dir

def _store_root(goldens, fixtures) -> Path:
    """The golden store a command works on (DIR, --goldens or the configured one), with the
    catalog loaded first: a torch.package golden's interned source is vetted against the
    fixture modules the catalog imports."""
    from harness.catalog import CatalogError, load_catalog
    from harness.config import ConfigError, resolve

    try:
        root = resolve(goldens=goldens, fixtures=fixtures or ".").goldens
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    try:
        load_catalog(resolve(goldens=str(root), fixtures=fixtures).fixtures)
    except (ConfigError, CatalogError):
        pass  # no catalog here: packages that intern fixture sources are then refused as unsafe
    return root


def _operators() -> frozenset:
    """The project's additions to the operator allowlist ([tool.bc-harness] operators)."""
    from harness.config import ConfigError, operators

    try:
        return operators(Path.cwd())
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def verify(args) -> int:
    from harness.goldens.sealing import verify

    root = _store_root(args.directory or args.goldens, args.fixtures)
    verified, findings = verify(readable_dir(root), trusted=args.trust_goldens, operators=_operators())
    problems = [f for f in findings if f.failing]
    for f in problems:
        print(f"{f.where}: {f.problem}")
    notes = [f for f in findings if not f.failing]
    if notes:
        print(f"{len(notes)} files are sound but cannot be loaded by this install (replay reports them as "
              f"load-errors; --verbose lists them)")
        if args.verbose:
            for f in notes:
                print(f"  {f.where}: {f.problem}")
    status = "FAILED" if problems else "OK"
    print(f"{status}: {verified} files match their manifests, {len(problems)} problems, in {root}")
    return 1 if problems else 0


def pin(args) -> int:
    directory = readable_dir(Path(args.directory))
    _store_root(None, args.fixtures)
    from harness.making.generate import command_line
    from harness.goldens.sealing import Refusal, pin

    info = {"command": command_line()}
    if args.torch:
        info["torch"] = args.torch
    try:
        manifest, code = pin(directory, info, trusted=args.trust_goldens, operators=_operators())
    except Refusal as exc:
        print(f"bc-harness pin: nothing pinned in {directory}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bc-harness pin: cannot write the manifest in {directory}: {exc}", file=sys.stderr)
        return 1
    for name in code:
        print(f"  code-carrying, sidecar written: {name}")
    print(f"pinned {len(manifest['files'])} files ({len(code)} carrying code) in {directory / 'manifest.json'}")
    return 0


def seal(args) -> int:
    from harness.goldens.sealing import Refusal, seal
    from harness.goldens.store import GoldenError, GoldenStore

    root = readable_dir(_store_root(args.goldens, args.fixtures), "golden directory")
    versions = args.versions or GoldenStore(root).versions()[0]
    failed = 0
    for version in versions:
        try:
            files, sidecars = seal(root, version, trusted=args.trust_goldens, operators=_operators())
        except (Refusal, GoldenError, OSError) as exc:
            print(f"{version}: not sealed: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{version}: sealed {files} files, {sidecars} sidecars written")
    return 1 if failed else 0


def report(args) -> int:
    from harness.reporting.report import Report

    paths = [found for p in map(Path, args.results)
             for found in (sorted([*p.glob("replay-*.json"), *p.glob("install-*.json")]) if p.is_dir() else [p])]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths:
        raise UsageError(f"no replay-*.json or install-*.json in {', '.join(args.results)}")
    if missing:
        raise UsageError(f"no such results file: {missing[0]}")
    if not (args.html or args.md):
        raise UsageError("say where to write the report: --html FILE and/or --md FILE")
    if args.html and args.md and Path(args.html).resolve() == Path(args.md).resolve():
        raise UsageError("--html and --md conflict: they name the same file")
    try:
        report = Report.load(paths)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"not a replay results file: {exc}") from exc
    if args.html:
        Path(args.html).write_text(report.html(), encoding="utf-8")
    if args.md:
        Path(args.md).write_text(report.markdown(), encoding="utf-8")
    from harness.reporting.radar import new_notices

    drifts = report.drifts()
    fresh = new_notices(report.records)
    for n in report.not_installed:
        print(f"row {n['row']} (torch {n['torch']}) was not installed: no result from it", file=sys.stderr)
    for release, before, flow, kind, text in fresh:
        print(f"new deprecation notice on {release} (not on {before}): {flow} {kind}: {text[:200]}")
    print(f"{len(report.records)} results from runtimes {', '.join(report.runtimes)}; "
          f"{len(drifts)} drifting (case, golden, backend) series, "
          f"{sum(1 for d in drifts if not d['known'])} not known; {len(fresh)} new deprecation notices; "
          + " and ".join(f"{k} written to {v}" for k, v in (("HTML", args.html), ("Markdown", args.md)) if v))
    return 0


def catalog_markdown(cases) -> str:
    """The catalog page's block (docs/catalog.md): counts per fixture file and artifact kind, then every case."""
    from harness import stacks
    from harness.catalog import ARTIFACT_KINDS

    files = Counter(c.source for c in cases)
    kinds = Counter(k for c in cases for k in c.artifacts)
    flows = Counter(c.flow for c in cases)
    used = [k for k in ARTIFACT_KINDS if kinds[k]]
    lines = [f"{len(cases)} cases. Per fixture file: " + ", ".join(f"`{f}` {n}" for f, n in files.items())
             + ". Per artifact kind: " + ", ".join(f"{k} {kinds[k]}" for k in used) + ".", "",
             "Cases per flow and artifact kind:", "",
             "| flow | cases | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for flow in (f for f in stacks.flow_names() if flows[f]):
        per_kind = Counter(k for c in cases if c.flow == flow for k in c.artifacts)
        lines.append(f"| {flow} | {flows[flow]} | " + " | ".join(str(per_kind[k] or "") for k in used) + " |")
    lines += ["", "| case | fixture | flow | artifacts | PyTorch test | what |", "|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| `{c.id}` | {c.source} | {c.flow} | {', '.join(c.artifacts)} | "
                     f"{c.pytorch.method if c.pytorch else ''} | {c.description} |")
    return "\n".join(lines) + "\n"


def diff_backends(args) -> int:
    from harness.making.diffbackends import markdown, matrix

    paths, cases = catalog(args)
    print((markdown if args.markdown else matrix)(cases, backends(args), paths.fixtures),
          end="" if args.markdown else "\n")
    return 0


def migrate(args) -> int:
    import json

    from harness.making.migration import legacy_cases, migrate as measure
    from harness.reporting.migration import markdown, text

    paths, chosen = catalog(args)
    if not legacy_cases(chosen):
        raise UsageError("no case of a legacy flow is selected: nothing to migrate")
    if args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: the number of cases measured at once must be at least 1")
    rows = measure(chosen, paths.fixtures, backends(args), args.jobs)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in rows], indent=1), encoding="utf-8")
    print(markdown(rows) if args.markdown else text(rows), end="" if args.markdown else "\n")
    return 0


def cases(args) -> int:
    _paths, cases = catalog(args)
    if args.markdown:
        print(catalog_markdown(cases), end="")
        return 0
    from tabulate import tabulate

    rows = [[c.id, c.flow, ",".join(c.artifacts), c.pytorch.method if c.pytorch else "", c.description]
            for c in cases]
    print(tabulate(rows, headers=["case", "flow", "artifacts", "PyTorch test", "what"]))
    return 0
