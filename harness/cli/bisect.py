"""``bc-harness bisect CASE``: the first torch release where a golden's result changed."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from harness.cli.common import UsageError, backends, catalog


def _version(flag: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return Version(text).public
    except InvalidVersion:
        raise UsageError(f"{flag} {text!r} is not a version") from None


def bisect(args) -> int:
    from harness.reporting.bisect import Probe, Replays, between, search
    from harness.compat import torch_release
    from harness.making.generate import command_line
    from harness.releases import ReleaseError, registry_releases

    chosen = backends(args)
    golden, good, bad = (_version(f, v) for f, v in (("--golden", args.golden), ("--good", args.good),
                                                      ("--bad", args.bad)))
    args.patterns = [args.case]
    paths, cases = catalog(args)
    if args.case not in {c.id for c in cases}:
        near = ", ".join(c.id for c in cases[:5])
        raise UsageError(f"no case {args.case!r} in the catalog" + (f" (did you mean {near}?)" if near else ""))
    running = torch_release()
    bad = bad or running
    say = lambda line: print(line, flush=True)
    replays = Replays(args.case, paths.goldens.resolve(), paths.fixtures.resolve(), running, chosen or (),
                      args.artifacts or (), say, command_line())
    say(f"replaying {args.case} on torch {bad}" + (f", golden {golden}" if golden else ", every golden set"))
    records, note = replays.records(bad, golden)
    if golden is None:
        golden = _changed_golden(records, bad)
        if golden is None:
            say(f"{args.case} holds on torch {bad} for every golden set older than it"
                + (f" ({note})" if note else "") + ": nothing to bisect")
            return 0
        say(f"the newest golden set whose result changed on torch {bad}: {golden}")
    bad_probe = Probe(bad, [r for r in records if r["golden_version"] == golden], note)
    if bad_probe.state != "changed":
        say(f"golden {golden} of {args.case} on torch {bad}: {bad_probe.state}: "
            f"{'; '.join(bad_probe.figures())}: nothing to bisect")
        return 0
    good = good or golden
    if Version(good) >= Version(bad):
        raise UsageError(f"the good release {good} is not older than the bad one {bad}")
    if good == golden and not args.verify_good:
        good_probe = Probe(good, note=f"assumed: the golden was made by torch {good} (--verify-good replays it)")
    else:
        good_probe = replays.probe(good, golden)
        if good_probe.state != "same":
            say(f"golden {golden} on torch {good}: {good_probe.state}: {'; '.join(good_probe.figures())}")
            raise UsageError(f"torch {good} is not a good release for this golden; give another --good")
    try:
        releases = between(registry_releases(), good, bad)
    except ReleaseError as exc:
        raise UsageError(str(exc)) from exc
    say(f"{len(releases) - 2} releases between {good} (good) and {bad} (changed): {', '.join(releases[1:-1]) or 'none'}")
    answer = search(releases, lambda release: replays.probe(release, golden), good_probe, bad_probe, say,
                    replays.cached)
    say("")
    for line in answer.lines():
        say(line)
    return 0


def _changed_golden(records: list[dict], bad: str) -> str | None:
    """The newest golden version older than ``bad`` with a changed result among ``records``."""
    from harness.reporting.bisect import CHANGED

    versions = {r["golden_version"] for r in records if r["verdict"] in CHANGED and not r.get("forward")}
    older = sorted((v for v in versions if Version(v) < Version(bad)), key=Version)
    return older[-1] if older else None
