"""HTML for auditors: one page per determination, and one report over a decision log.

Pages are Jinja2 templates (`templates/`, autoescaped: every string from a case is text,
never markup), self-contained: inline CSS with print rules, no script, nothing fetched.
The log report streams its rows from SQLite once, keeping only counters, and spools what
it lists of the re-decided rows to temporary files: its memory does not grow with the log.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional, TextIO

import msgspec

from covkb import __version__

TEMPLATES = Path(__file__).parent / "templates"
DECISIONS = ("covered", "not_covered", "pending", "not_applicable")
STATUSES = ("met", "not_met", "unknown")
# Pages of re-decided determinations embedded in one report; the rest are listed by id.
PAGE_LIMIT = 500


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # only the HTML commands pay for it

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.ChainableUndefined)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Where a determination came from: covkb and the kb that made it, when, and its log row."""

    covkb: str
    kb_sha256: str
    time: str
    row: Optional[int] = None
    log: Optional[str] = None
    input_sha256: Optional[str] = None
    row_hash: Optional[str] = None

    @classmethod
    def current(cls, explanation=None) -> "Provenance":
        """This covkb and kb, now; the explanation's own provenance when it carries one."""
        from covkb.audit import kb_hash

        stated = getattr(explanation, "provenance", None)
        if stated is not None:
            get = stated.get if isinstance(stated, dict) else lambda key: getattr(stated, key, None)
            return cls(get("covkb") or __version__, get("kb_sha256") or kb_hash(), _now())
        return cls(__version__, kb_hash(), _now())

    @classmethod
    def of_row(cls, row, log: Optional[str] = None) -> "Provenance":
        return cls(row["covkb_version"], row["kb_sha256"], row["logged_at"], row["id"], log,
                   row["input_sha256"], row["row_hash"])


def determination_page(explanation, provenance: Provenance) -> str:
    """One self-contained HTML page for one determination."""
    return _environment().get_template("determination.html").render(
        e=explanation, p=provenance, generator=__version__)


# ---------------------------------------------------------------------------
# The report over a decision log
# ---------------------------------------------------------------------------
class _Status(msgspec.Struct):
    id: str
    status: str


class _Missing(msgspec.Struct):
    missing: list[str] = []


_statuses = msgspec.json.Decoder(list[_Status])
_missing = msgspec.json.Decoder(_Missing)


@dataclass
class Tally:
    """What the report counts, one row at a time."""

    rows: int = 0
    first: Optional[str] = None
    last: Optional[str] = None
    last_id: Optional[int] = None
    last_row_hash: Optional[str] = None
    outcomes: Counter = field(default_factory=Counter)  # (version, decision, label)
    decided: Counter = field(default_factory=Counter)  # version -> rows with criteria
    statuses: dict = field(default_factory=dict)  # version -> criterion -> Counter(status), in policy order
    words_row: dict = field(default_factory=dict)  # version -> the latest row's id, for the policy's words
    missing: Counter = field(default_factory=Counter)
    pending: int = 0
    weeks: Counter = field(default_factory=Counter)  # (Monday, decision)
    logged_under: Counter = field(default_factory=Counter)  # (kb_sha256, covkb version)
    _mondays: dict = field(default_factory=dict)

    def add(self, row) -> None:
        self.rows += 1
        logged_at, version, decision = row["logged_at"], row["policy_version"], row["decision"]
        self.first = self.first or logged_at
        self.last, self.last_id, self.last_row_hash = logged_at, row["id"], row["row_hash"]
        self.outcomes[version, decision, row["label"]] += 1
        self.logged_under[row["kb_sha256"], row["covkb_version"]] += 1
        day = logged_at[:10]
        monday = self._mondays.get(day)
        if monday is None:
            date = datetime.date.fromisoformat(day)
            monday = self._mondays[day] = date - datetime.timedelta(days=date.weekday())
        self.weeks[monday, decision] += 1
        criteria = _statuses.decode(row["criteria_json"])
        if criteria:
            self.decided[version] += 1
            self.words_row[version] = row["id"]
            table = self.statuses.setdefault(version, {})
            for criterion in criteria:
                counts = table.get(criterion.id)
                if counts is None:
                    counts = table[criterion.id] = Counter()
                counts[criterion.status] += 1
        missing = _missing.decode(row["explanation_json"]).missing
        if decision == "pending":
            self.pending += 1
        self.missing.update(missing)


@dataclass
class Redecided:
    """Determinations the current knowledge base decides differently, spooled to disk."""

    considered: int = 0
    count: int = 0
    reworded: int = 0
    kb_changed: int = 0
    listing: Optional[tempfile.SpooledTemporaryFile] = None
    pages: Optional[tempfile.SpooledTemporaryFile] = None
    page_ends: list = field(default_factory=list)

    def entries(self) -> Iterator[dict]:
        if self.listing is None:
            return
        self.listing.seek(0)
        for line in self.listing:
            yield json.loads(line)

    def embedded(self) -> Iterator[str]:
        from markupsafe import Markup

        if self.pages is None:
            return
        self.pages.seek(0)
        start = 0
        for end in self.page_ends:
            yield Markup(self.pages.read(end - start).decode())
            start = end

    def close(self) -> None:
        for spool in (self.listing, self.pages):
            if spool is not None:
                spool.close()


def _range(since: Optional[str], until: Optional[str]) -> dict:
    return {"since": since, "until": until}


def tally(connection: sqlite3.Connection, since: Optional[str] = None,
          until: Optional[str] = None) -> Tally:
    from covkb.audit import rows

    counted = Tally()
    columns = ("id, logged_at, policy_version, decision, label, criteria_json, explanation_json, "
               "kb_sha256, covkb_version, row_hash")
    for row in rows(connection, columns=columns, **_range(since, until)):
        counted.add(row)
    return counted


def redecided(connection: sqlite3.Connection, counted: Tally, since: Optional[str] = None,
              until: Optional[str] = None, everything: bool = False, log: Optional[str] = None,
              chunk: int = 500, workers: Optional[int] = None) -> Redecided:
    """Re-decide the rows logged under another kb or covkb (every row with `everything`);
    a determination logged under the current kb and covkb is what they decide now."""
    from covkb.audit import kb_hash, rows

    current = kb_hash()
    found = Redecided()
    stale = sum(n for (kb, covkb), n in counted.logged_under.items()
                if kb != current or covkb != __version__)
    if not everything and not stale:
        return found

    def stored():
        for row in rows(connection, **_range(since, until)):
            if everything or row["kb_sha256"] != current or row["covkb_version"] != __version__:
                found.considered += 1
                yield dict(row)

    found.listing = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", encoding="utf-8")
    found.pages = tempfile.SpooledTemporaryFile(max_size=1 << 22)
    macro = _environment().get_template("_determination.html").module.determination
    stored_type = _explanation_type()
    if workers is None:
        workers = 1 if (counted.rows if everything else stale) <= chunk else os.cpu_count() or 1
    for row, now, explanation, kb_changed in _redecide_parallel(stored(), current, chunk, workers):
        then = {c["id"]: c["status"] for c in json.loads(row["criteria_json"])}
        changed = [[c.id, then.get(c.id, "-"), c.status] for c in now.criteria if then.get(c.id) != c.status]
        changed += [[ident, status, "-"] for ident, status in then.items()
                    if ident not in {c.id for c in now.criteria}]
        if not changed and (row["policy_version"], row["decision"], row["label"]) == (now.version, now.decision, now.label):
            found.reworded += 1  # decided alike; only the words of its reasons differ
            continue
        found.count += 1
        found.kb_changed += kb_changed
        paged = len(found.page_ends) < PAGE_LIMIT
        found.listing.write(json.dumps({
            "id": row["id"], "case_id": row["case_id"], "logged_at": row["logged_at"],
            "then": [row["policy_version"], row["decision"], row["label"]],
            "now": [now.version, now.decision, now.label], "changed": changed,
            "kb_changed": kb_changed, "paged": paged}) + "\n")
        if paged:
            now_words = {"decision": now.decision, "label": now.label, "version": now.version,
                         "reason": getattr(explanation, "reason", None) or explanation.sentence}
            page = str(macro(msgspec.json.decode(row["explanation_json"], type=stored_type),
                             Provenance.of_row(row, log), "h3", f"d{row['id']}", {}, now_words))
            found.pages.write(page.encode())
            found.page_ends.append(found.pages.tell())
    return found


def _redecided_chunk(part: list, current: str) -> list:
    from covkb.audit import redecide

    return list(redecide(part, current, chunk=len(part) or 1))


def _redecide_parallel(stored: Iterator[dict], current: str, chunk: int, workers: int):
    """audit.redecide over worker processes, a window of chunks in flight, in id order."""
    from itertools import islice

    if workers <= 1:
        from covkb.audit import redecide

        yield from redecide(stored, current, chunk)
        return
    import gc
    import multiprocessing
    from collections import deque

    from covkb import api, decide

    api.versions()  # workers fork with the policy loaded, and the compiled engine built once
    decide.prepare(chunk)
    gc.freeze()
    with multiprocessing.get_context("fork").Pool(workers, maxtasksperchild=50) as pool:
        window: deque = deque()
        while part := list(islice(stored, chunk)):
            window.append(pool.apply_async(_redecided_chunk, (part, current)))
            if len(window) >= 2 * workers:
                yield from window.popleft().get()
        while window:
            yield from window.popleft().get()


def _explanation_type():
    from covkb.explain import Explanation

    return Explanation


# ---------------------------------------------------------------------------
# The chart: decisions per week, drawn as SVG
# ---------------------------------------------------------------------------
COLOURS = {"covered": "#1a7f37", "not_covered": "#b42318", "pending": "#d4a72c",
           "not_applicable": "#8c959f"}


@dataclass
class Bar:
    x: float
    width: float
    week: str
    segments: list  # (decision, y, height, count)
    total: int


@dataclass
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: float
    plot_height: float
    bars: list
    ticks: list  # (y, value)
    labels: list  # (x, text)
    weeks: list  # (Monday, {decision: count}) for the table beside the chart


def _nice(top: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten at or above `top`."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= top:
                return step * scale
        scale *= 10


def week_chart(weeks: Counter, width: int = 720, height: int = 260) -> Optional[Chart]:
    """Stacked bars, one per week from the first to the last logged, empty weeks kept."""
    if not weeks:
        return None
    mondays = sorted({monday for monday, _ in weeks})
    span = [mondays[0] + datetime.timedelta(weeks=n)
            for n in range((mondays[-1] - mondays[0]).days // 7 + 1)]
    left, top, bottom, right = 48, 12, 44, 12
    plot_width, plot_height = width - left - right, height - top - bottom
    totals = [sum(weeks[monday, d] for d in DECISIONS) for monday in span]
    ceiling = _nice(max(max(totals), 1))
    slot = plot_width / len(span)
    bar_width = max(min(slot * 0.8, 48), 1)
    bars, table = [], []
    for index, monday in enumerate(span):
        x = left + index * slot + (slot - bar_width) / 2
        base, segments = top + plot_height, []
        counts = {d: weeks[monday, d] for d in DECISIONS if weeks[monday, d]}
        for decision, count in counts.items():
            size = plot_height * count / ceiling
            base -= size
            segments.append((decision, round(base, 2), round(size, 2), count))
        bars.append(Bar(round(x, 2), round(bar_width, 2), monday.isoformat(), segments, totals[index]))
        if counts:
            table.append((monday.isoformat(), counts))
    steps = next(n for n in (5, 4, 2, 1) if ceiling % n == 0)  # whole-number ticks
    ticks = [(round(top + plot_height - plot_height * k / steps, 2), ceiling * k // steps)
             for k in range(steps + 1)]
    every = -(-len(span) // 8)
    labels = [(round(left + (i + 0.5) * slot, 2), span[i].isoformat()) for i in range(0, len(span), every)]
    return Chart(width, height, left, top, plot_width, plot_height, bars, ticks, labels, table)


# ---------------------------------------------------------------------------
def _criterion_words(connection: sqlite3.Connection, counted: Tally) -> dict:
    """version -> criterion -> the policy's words, from the latest row of each version."""
    words = {}
    for version, ident in counted.words_row.items():
        row = connection.execute("SELECT criteria_json FROM determinations WHERE id = ?", (ident,)).fetchone()
        words[version] = {c["id"]: c["text"] for c in json.loads(row[0])}
    return words


def _field_words() -> dict:
    """Each case field as a reviewer names it, when the knowledge base says (kb/words.lp)."""
    from covkb import decide

    facts = getattr(decide.policy(), "facts", None) or {}
    return {str(args[0]): str(args[1]) for args in facts.get("field_words", ()) if len(args) >= 2}


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _version_key(version: Optional[str]) -> tuple:
    return (version is None, version or "")


def audit_report(connection: sqlite3.Connection, sink: TextIO, since: Optional[str] = None,
                 until: Optional[str] = None, everything: bool = False,
                 log: Optional[str] = None) -> Tally:
    """Write the report over the determinations logged in [since, until) to sink."""
    from covkb.audit import kb_hash

    counted = tally(connection, since, until)
    found = redecided(connection, counted, since, until, everything, log)
    try:
        outcomes = sorted(counted.outcomes.items(),
                          key=lambda item: (_version_key(item[0][0]), DECISIONS.index(item[0][1])
                                            if item[0][1] in DECISIONS else 9, item[0][2]))
        by_decision = Counter()
        for (_, decision, _), count in counted.outcomes.items():
            by_decision[decision] += count
        words = _criterion_words(connection, counted)
        criteria = []
        for version in sorted(counted.statuses, key=_version_key):
            whole = counted.decided[version]
            rows = [{"id": ident, "words": words.get(version, {}).get(ident, ""),
                     **{status: counts[status] for status in STATUSES},
                     "not_met_share": _share(counts["not_met"], whole),
                     "unknown_share": _share(counts["unknown"], whole)}
                    for ident, counts in counted.statuses[version].items()]
            deny = sorted((r for r in rows if r["not_met"]), key=lambda r: -r["not_met"])[:3]
            pend = sorted((r for r in rows if r["unknown"]), key=lambda r: -r["unknown"])[:3]
            criteria.append({"version": version, "decided": whole, "rows": rows, "deny": deny, "pend": pend})
        template = _environment().get_template("audit.html")
        stream = template.generate(
            t=counted, since=since, until=until, log=log, generated=_now(), covkb=__version__,
            kb=kb_hash(), everything=everything, outcomes=outcomes, by_decision=by_decision,
            decisions=DECISIONS, criteria=criteria, missing=counted.missing.most_common(),
            field_words=_field_words() if counted.missing else {},
            chart=week_chart(counted.weeks), colours=COLOURS, found=found,
            entries=found.entries(), pages=found.embedded(), page_limit=PAGE_LIMIT,
            share=_share, generator=__version__)
        for text in stream:
            sink.write(text)
    finally:
        found.close()
    return counted
