"""The deprecation radar: from replays on several torch releases (merged result records), per flow
and artifact kind, the release where replaying first warned of a deprecation, each notice with the
release it appeared in, and the release where goldens that loaded before first stopped loading.

A removal then shows as a dated column before it reaches a stable release: the nightly build's
records count as a release (the newest). "First" is as far as the records see: a notice already
raised on the oldest release replayed is said to date from it or earlier.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from harness.notices import is_deprecation, message
from harness.reporting import markdown_row as _row, markdown_text as _md
from harness.versions import version_key

#: verdicts that say the artifact loaded (whatever its numbers did)
_LOADED = ("pass", "rounding", "drift")


@dataclass
class Line:
    """One (flow, artifact kind) over the releases replayed."""

    flow: str
    kind: str
    #: the releases that replayed at least one of its goldens, oldest first
    releases: list[str] = field(default_factory=list)
    #: deprecation notice (its message, category left out) -> the first release that raised it
    notices: dict[str, str] = field(default_factory=dict)
    #: the first release where a golden that loaded on an older release did not, and why
    stops_loading_at: str | None = None
    stop_reason: str = ""
    #: how many results stopped loading there, of how many results of the line that release replayed
    stopped: int = 0
    replayed_at_stop: int = 0

    @property
    def warns_from(self) -> str | None:
        return min(self.notices.values(), key=version_key) if self.notices else None

    def dated(self, release: str | None) -> str:
        """A release as a first sighting: "2.13.0", or "≤ 2.8.0" where it is the oldest replayed (the
        notice may be older: the records cannot tell)."""
        if release is None:
            return ""
        return f"≤ {release}" if self.releases and release == self.releases[0] else release

    def loading(self) -> str:
        if self.stops_loading_at:
            return f"{self.stops_loading_at} ({self.stopped} of {self.replayed_at_stop} results)"
        return f"loads on {self.releases[-1]}" if self.releases else ""


def _key(record: dict) -> tuple[str, str]:
    return record.get("flow") or "(flow not recorded)", record["artifact"]


def _replayed(record: dict) -> bool:
    return record["case"] != "*" and record["artifact"] != "*" and record["verdict"] not in ("skip", "missing") \
        and not record.get("forward")


def _notices(record: dict) -> list[str]:
    """A record's deprecation notices, without their categories (a malformed list gives none)."""
    found = record.get("warnings")
    return [message(w) for w in found if isinstance(w, str) and is_deprecation(w)] if isinstance(found, list) else []


def radar(records: list[dict]) -> list[Line]:
    """The radar's lines, ordered by flow and kind, from every backward result record."""
    lines: dict[tuple[str, str], Line] = {}
    runs: dict[tuple, dict[str, dict]] = {}  # (case, kind, backend, golden) -> release -> record
    for r in sorted(filter(_replayed, records), key=lambda r: version_key(r["runtime_version"])):
        line = lines.setdefault(_key(r), Line(*_key(r)))
        release = r["runtime_version"]
        if release not in line.releases:
            line.releases.append(release)
        for notice in _notices(r):
            line.notices.setdefault(notice, release)
        runs.setdefault((r["case"], r["artifact"], r["backend"], r["golden_version"]), {})[release] = r
    for by_release in runs.values():
        _stops(lines[_key(next(iter(by_release.values())))], by_release)
    for by_release in runs.values():
        line = lines[_key(next(iter(by_release.values())))]
        line.replayed_at_stop += line.stops_loading_at in by_release
    return [lines[k] for k in sorted(lines)]


def _stops(line: Line, by_release: dict[str, dict]) -> None:
    """Date the first release where this golden no longer loads, having loaded on an older one."""
    loaded_before = False
    for release, r in by_release.items():  # oldest first
        if r["verdict"] in _LOADED:
            loaded_before = True
        elif r["verdict"] == "load-error" and loaded_before:
            if line.stops_loading_at is None or version_key(release) < version_key(line.stops_loading_at):
                line.stops_loading_at, line.stop_reason = release, r.get("message") or ""
            if release == line.stops_loading_at:
                line.stopped += 1
            return


def new_notices(records: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """Deprecation notices a release raised that the release before it (among those replayed) did
    not, for the same flow and kind: (release, previous release, flow, kind, notice). A finding
    like a drift: the nightly's summary lists them."""
    by_key: dict[tuple[str, str], dict[str, set[str]]] = {}
    for r in filter(_replayed, records):
        seen = by_key.setdefault(_key(r), {}).setdefault(r["runtime_version"], set())
        seen.update(_notices(r))
    found = []
    for (flow, kind), by_release in sorted(by_key.items()):
        releases = sorted(by_release, key=version_key)
        for before, release in zip(releases, releases[1:]):
            found += [(release, before, flow, kind, n) for n in sorted(by_release[release] - by_release[before])]
    return sorted(found, key=lambda f: (version_key(f[0]), f[2], f[3]))


def short(text: str, limit: int) -> str:
    """``text`` cut at a word boundary within ``limit`` characters, marked "…" where cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"


def _single(records: list[dict]) -> str | None:
    """The one release replayed, where only one was: no notice can be new against none."""
    releases = {r["runtime_version"] for r in filter(_replayed, records)}
    return next(iter(releases)) if len(releases) == 1 else None


def markdown(records: list[dict]) -> list[str]:
    """The radar and the new notices as Markdown sections."""
    out = ["## Deprecation radar", "",
           "Per flow and artifact kind, over the releases replayed: the first release whose replay warned of a "
           "deprecation (\"≤\": already on the oldest replayed), and the first release where goldens that loaded "
           "on an older one stopped loading.", "",
           "| flow | kind | releases | warns from | stops loading at | notices (first release) |",
           "|---|---|---|---|---|---|"]
    for line in radar(records):
        notices = "; ".join(f"{line.dated(rel)}: {short(text, 160)}" for text, rel in
                            sorted(line.notices.items(), key=lambda kv: version_key(kv[1])))
        out.append(_row(line.flow, line.kind, f"{line.releases[0]} … {line.releases[-1]}" if line.releases else "",
                        line.dated(line.warns_from) or "no deprecation", line.loading(), notices))
    fresh = new_notices(records)
    out += ["", "## New deprecation notices", ""]
    out += [f"- **{_md(release)}** (not on {_md(before)}): {_md(flow)} {_md(kind)}: {_md(short(text, 300))}"
            for release, before, flow, kind, text in fresh] \
        or [f"Only {_single(records)} was replayed: no release before it to compare with." if _single(records) else
            "None: every deprecation notice was already raised by the release before."]
    return out


def html_parts(records: list[dict]) -> list[str]:
    """The radar and the new notices as HTML sections."""
    e = html.escape
    parts = ["<h2>Deprecation radar</h2><p>Per flow and artifact kind: the first release whose replay warned of a "
             "deprecation (\u2264: already on the oldest replayed) and the first release where goldens that loaded "
             "on an older one stopped loading.</p>",
             "<table><tr><th>flow</th><th>kind</th><th>releases</th><th>warns from</th><th>stops loading at</th>"
             "<th>notices (first release)</th></tr>"]
    for line in radar(records):
        notices = "<br>".join(f"{e(line.dated(rel))}: {e(short(text, 200))}" for text, rel in
                              sorted(line.notices.items(), key=lambda kv: version_key(kv[1])))
        stop = e(line.loading()) + (f"<br><small>{e(line.stop_reason[:200])}</small>" if line.stops_loading_at else "")
        parts.append(f"<tr><td>{e(line.flow)}</td><td>{e(line.kind)}</td>"
                     f"<td>{e(line.releases[0])} \u2026 {e(line.releases[-1])}</td>"
                     f"<td>{e(line.dated(line.warns_from) or 'no deprecation')}</td><td>{stop}</td><td>{notices}</td></tr>")
    parts.append("</table>")
    fresh = new_notices(records)
    parts.append(f"<h2>New deprecation notices: {len(fresh)}</h2>")
    single = _single(records)
    parts += ["<ul>", *(f"<li><b>{e(release)}</b> (not on {e(before)}): {e(flow)} {e(kind)}: {e(short(text, 300))}</li>"
                        for release, before, flow, kind, text in fresh), "</ul>"] if fresh else \
        [f"<p>Only {e(single)} was replayed: no release before it to compare with.</p>" if single else
         "<p>None: every deprecation notice was already raised by the release before.</p>"]
    return parts
