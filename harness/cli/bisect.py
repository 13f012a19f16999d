"""``bc-harness bisect CASE``: the first torch release where a golden's result changed; with
``--library NAME``, the first release of a stack's library on the running torch."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from harness import stacks
from harness.cli.common import UsageError, backends, catalog
from harness.versions import parse_version, set_label, version_key


def _version(flag: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return Version(text).public
    except InvalidVersion:
        raise UsageError(f"{flag} {text!r} is not a version") from None


def _set_name(text: str | None) -> str | None:
    """A golden set's name as given: a torch release, with its label if any (harness.versions)."""
    if text is not None and parse_version(text) is None:
        raise UsageError(f"--golden {text!r} is not a golden set's name (a torch release, with a label if any)")
    return text


def bisect(args) -> int:
    from harness.reporting.bisect import Probe, Replays, between, search
    from harness.compat import torch_release
    from harness.making.generate import command_line
    from harness.releases import ReleaseError, registry_releases

    chosen = backends(args)
    golden = _set_name(args.golden)
    good, bad = (_version(f, v) for f, v in (("--good", args.good), ("--bad", args.bad)))
    args.patterns = [args.case]
    paths, cases = catalog(args)
    if args.case not in {c.id for c in cases}:
        near = ", ".join(c.id for c in cases[:5])
        raise UsageError(f"no case {args.case!r} in the catalog" + (f" (did you mean {near}?)" if near else ""))
    running = torch_release()
    library = _library(args.library) if args.library else None
    bad = bad or (library[1] if library else running)
    what = library[0] if library else "torch"
    say = lambda line: print(line, flush=True)
    replays = Replays(args.case, paths.goldens.resolve(), paths.fixtures.resolve(), running, chosen or (),
                      args.artifacts or (), say, command_line(), library=library,
                      torch_for=stacks.libraries()[library[0]].torch_for if library else None)
    say(f"replaying {args.case} on {what} {bad}" + (f" (torch {running})" if library else "")
        + (f", golden {golden}" if golden else ", every golden set"))
    records, note = replays.records(bad, golden)
    if golden is None:
        golden = _changed_golden(records, running if library else bad)
        if golden is None:
            say(f"{args.case} holds on {what} {bad} for every golden set older than it"
                + (f" ({note})" if note else "") + ": nothing to bisect")
            return 0
        say(f"the newest golden set whose result changed on {what} {bad}: {golden}")
    bad_probe = Probe(bad, [r for r in records if r["golden_version"] == golden], note)
    if bad_probe.state != "changed":
        say(f"golden {golden} of {args.case} on torch {bad}: {bad_probe.state}: "
            f"{'; '.join(bad_probe.figures())}: nothing to bisect")
        return 0
    good = good or (_made_with(paths.goldens, golden, args.case, library[0]) if library else str(parse_version(golden)))
    if good is None:
        raise UsageError(f"golden {golden} does not record which {what} made it: give --good")
    if Version(good) >= Version(bad):
        raise UsageError(f"the good release {good} is not older than the bad one {bad}")
    made_by_good = (good == str(parse_version(golden))) if not library else not args.good
    if made_by_good and not args.verify_good:
        good_probe = Probe(good, note=f"assumed: the golden was made by {what} {good} (--verify-good replays it)")
    else:
        good_probe = replays.probe(good, golden)
        if good_probe.state != "same":
            say(f"golden {golden} on {what} {good}: {good_probe.state}: {'; '.join(good_probe.figures())}")
            raise UsageError(f"{what} {good} is not a good release for this golden; give another --good")
    try:
        releases = between(registry_releases(package=what), good, bad)
    except ReleaseError as exc:
        raise UsageError(str(exc)) from exc
    if library:  # each release beside the torch its kernels load with; a release paired with none is not tried
        releases = [r for r in releases if r in (good, bad) or replays.torch_of(r)]
    say(f"{len(releases) - 2} {what} releases between {good} (good) and {bad} (changed)"
        + (", each beside the torch it pairs with" if library else "") + f": "
        + (", ".join(f"{r} (torch {replays.torch_of(r)})" if library else r for r in releases[1:-1]) or "none"))
    answer = search(releases, lambda release: replays.probe(release, golden), good_probe, bad_probe, say,
                    replays.cached, what)
    say("")
    for line in answer.lines():
        say(line)
    return 0


def _changed_golden(records: list[dict], bad: str) -> str | None:
    """The newest golden set older than torch ``bad`` (or of it, for a set with a label) with a
    changed result among ``records``."""
    from harness.reporting.bisect import CHANGED

    versions = {r["golden_version"] for r in records if r["verdict"] in CHANGED and not r.get("forward")}
    bad = Version(bad)
    older = sorted((v for v in versions if parse_version(v) < bad or (parse_version(v) == bad and set_label(v))),
                   key=version_key)
    return older[-1] if older else None


def _library(name: str, given: str = "--library ") -> tuple[str, str]:
    """(a stack library's name, its installed release): bisected on the running torch. ``given``:
    how the command line named it, for its messages."""
    known = stacks.libraries()
    if name not in known:
        raise UsageError(f"{given}{name}: not a stack's library ({', '.join(known) or 'none'})")
    installed = known[name].versions().get(name)
    if installed is None:
        raise UsageError(f"{given}{name}: {name} is not installed here ({known[name].library_problem(name)})")
    return name, str(Version(installed).public)


def _made_with(goldens, golden: str, case: str, library: str) -> str | None:
    """Which release of ``library`` made ``case`` in set ``golden``: as its entry (or set, or label)
    records, else the release that pairs with the set's torch (what made the sets before they recorded it)."""
    from harness.goldens.store import GoldenStore

    found = GoldenStore(goldens).open(golden, unsealed_ok=True)
    if found.manifest is None:
        return None
    entry = found.cases.get(case)
    recorded = (entry.made_with or {}).get(library) if entry is not None and not entry.malformed else None
    header = found.manifest.info.get("libraries")
    label = set_label(golden) or ""
    paired = [r.split("==", 1)[1] for r in stacks.libraries()[library].packages(str(parse_version(golden)))
              if r.startswith(library + "==")]
    for given in (recorded, header.get(library) if isinstance(header, dict) else None,
                  label.split(".", 1)[1] if label.startswith(library + ".") else None, *paired[:1]):
        try:  # a manifest is untrusted: only a release number becomes a pip requirement
            if isinstance(given, str) and len(given) < 40:
                return str(Version(given).public)
        except InvalidVersion:
            continue
    return None


def window(args) -> int:
    """``bc-harness window LIBRARY``: the goldens each release of a stack's library made, replayed
    on every release of it from that one on (each beside the torch it pairs with), per backend."""
    from harness.compat import torch_release
    from harness.making.generate import command_line
    from harness.reporting.bisect import Replays
    from harness.reporting.window import made_with, measure, programs, table

    library = _library(args.library, "window ")
    stack = stacks.libraries()[library[0]]
    args.patterns = None
    paths, cases = catalog(args)
    flows = {f.name for f in stack.flows}
    ids = [c.id for c in cases if c.flow in flows]
    if not ids:
        raise UsageError(f"the catalog has no case of the {stack.name} stack")
    running = torch_release()
    say = lambda line: print(line, flush=True)
    replays = Replays("", paths.goldens.resolve(), paths.fixtures.resolve(), running, backends(args) or (), (), say,
                      command_line(), library=library, torch_for=stack.torch_for)
    by_golden = made_with(replays.store, library[0], set(ids))
    makers = sorted(set(by_golden.values()), key=Version)
    if not makers:
        raise UsageError(f"no golden set records which {library[0]} release made its cases")
    runtimes = sorted({*[m for m in makers if Version(m) >= Version(makers[0])], *(args.runtime or [])} |
                      ({library[1]} if not args.runtime else set()), key=Version)
    say(f"{library[0]} goldens made with {', '.join(makers)}; replayed on {', '.join(runtimes)}")
    cells, notes = measure(replays, library[0], ids, runtimes, getattr(stack, "promised", None))
    say("")
    for line in table(cells, programs(replays.store, by_golden, "pte") if "pte" in {c.artifact for c in cells} else None):
        say(line)
    for runtime, note in notes.items():
        say(f"{library[0]} {runtime}: {note}")
    return 0
