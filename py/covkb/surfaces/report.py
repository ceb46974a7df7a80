"""HTML for auditors: one page per determination, and one report over a decision log.

Pages are Jinja2 templates (`templates/`, autoescaped: every string from a case is text,
never markup), self-contained: inline CSS with print rules, no script, nothing fetched.
Bidirectional controls in a string from a case are shown as their escapes (`\\u202e`),
as the terminal shows them, so that no case id can reorder what a heading says.
The log report streams its rows from SQLite once, keeping only counters, and spools what
it lists of the re-decided rows to temporary files: its memory does not grow with the log,
and its size does not grow with the number of rows decided differently (`limit`).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sqlite3
import sys
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
# Re-decided determinations listed, each with its page, in one report (decision changes
# first); the rest are counted, and `covkb audit replay --format csv` lists them all.
LIMIT = 50
# Bidirectional formatting controls (LRM, RLM, LRE..RLO, LRI..PDI): shown as escapes.
BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in BIDI}


def neutral(text: str) -> str:
    """text with every bidirectional control shown as its escape, as the terminal shows it."""
    return text.translate(_BIDI_ESCAPES)


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # only the HTML commands pay for it

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.ChainableUndefined)
    environment.filters.update(second=to_the_second, n=thousands, words=_words, digest=_digest, ident=_ident)
    return environment


def _words(name) -> str:
    """An identifier (`not_covered`) as words (`not covered`)."""
    return str(name).replace("_", " ")


def _ident(value):
    """An identifier (`approved_car_t_center`) that may wrap after `_` or `.`, never inside a word."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"([_.])", r"\1<wbr>", str(escape(value))))


def _digest(value):
    """A long hex digest in groups of 16 that may wrap between groups, never inside one."""
    from markupsafe import Markup, escape

    text = str(value or "")
    return Markup("<wbr>").join(escape(text[i:i + 16]) for i in range(0, len(text), 16))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def to_the_second(stamp) -> str:
    """An ISO timestamp as logged (microseconds) shown to the second."""
    if not stamp:
        return ""
    try:
        return datetime.datetime.fromisoformat(str(stamp)).isoformat(timespec="seconds")
    except ValueError:
        return str(stamp)


def thousands(number) -> str:
    return f"{number:,}" if isinstance(number, int) else str(number)


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
    date_of_service: Optional[str] = None  # from the logged input, for rows logged without it

    @classmethod
    def current(cls, explanation=None) -> "Provenance":
        """This covkb and kb, now; the explanation's own provenance when it carries one."""
        from covkb.surfaces.audit import kb_hash

        stated = getattr(explanation, "provenance", None)
        if stated is not None:
            get = stated.get if isinstance(stated, dict) else lambda key: getattr(stated, key, None)
            return cls(get("covkb") or __version__, get("kb_sha256") or kb_hash(), _now())
        return cls(__version__, kb_hash(), _now())

    @classmethod
    def of_row(cls, row, log: Optional[str] = None) -> "Provenance":
        try:
            service = json.loads(row["input_json"]).get("date_of_service")
        except (IndexError, KeyError, ValueError, AttributeError):
            service = None
        return cls(row["covkb_version"], row["kb_sha256"], row["logged_at"], row["id"], log,
                   row["input_sha256"], row["row_hash"], service if isinstance(service, str) else None)


def determination_page(explanation, provenance: Provenance) -> str:
    """One self-contained HTML page for one determination."""
    return neutral(_environment().get_template("determination.html").render(
        e=explanation, p=provenance, generator=__version__))


# ---------------------------------------------------------------------------
# The report over a decision log
# ---------------------------------------------------------------------------
class _Status(msgspec.Struct):
    id: str
    status: str


class _Document(msgspec.Struct):
    fields: list[str] = []


class _Missing(msgspec.Struct):
    missing: list[str] = []
    documentation: list[_Document] = []


_statuses = msgspec.json.Decoder(list[_Status])
_missing = msgspec.json.Decoder(_Missing)


@dataclass
class Tally:
    """What the report counts, one row at a time. What-ifs (decided under a version asked
    for, or one side of a comparison) are left out of every count unless include_what_if."""

    include_what_if: bool = False
    rows: int = 0
    what_if: int = 0  # what-ifs counted (include_what_if) or left out
    first: Optional[str] = None
    last: Optional[str] = None
    last_id: Optional[int] = None
    last_row_hash: Optional[str] = None
    outcomes: Counter = field(default_factory=Counter)  # (version, decision, label)
    decided: Counter = field(default_factory=Counter)  # version -> rows with criteria
    statuses: dict = field(default_factory=dict)  # version -> criterion -> Counter(status), in policy order
    words_row: dict = field(default_factory=dict)  # version -> the latest row's id, for the policy's words
    missing: Counter = field(default_factory=Counter)
    clarify: Counter = field(default_factory=Counter)  # field -> pending rows with a name in it to clarify
    pending: int = 0
    weeks: Counter = field(default_factory=Counter)  # (Monday, decision)
    logged_under: Counter = field(default_factory=Counter)  # (kb_sha256, covkb version)
    _mondays: dict = field(default_factory=dict)

    def add(self, row) -> None:
        if row["what_if"]:
            self.what_if += 1
            if not self.include_what_if:
                return
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
        stored = _missing.decode(row["explanation_json"])
        self.missing.update(stored.missing)
        if decision == "pending":
            self.pending += 1
            # what to send that no missing field names: a name to clarify
            self.clarify.update({name for item in stored.documentation if not set(item.fields) & set(stored.missing)
                                 for name in item.fields})


class _Spool:
    """Strings written once and read back in order, on disk past a megabyte."""

    def __init__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=1 << 20)
        self.ends: list = []

    def write(self, text: str) -> None:
        self.file.write(text.encode())
        self.ends.append(self.file.tell())

    def __len__(self) -> int:
        return len(self.ends)

    def read(self, count: int) -> Iterator[str]:
        self.file.seek(0)
        start = 0
        for end in self.ends[:count]:
            yield self.file.read(end - start).decode()
            start = end

    def close(self) -> None:
        self.file.close()


DECISION_CHANGED, OTHER_CHANGE = "decision", "criteria"


@dataclass
class Redecided:
    """Determinations the current knowledge base decides differently: counted by kind of
    change, and the first `limit` of them (decision changes first) spooled to disk with
    their pages."""

    limit: int = LIMIT
    considered: int = 0
    count: int = 0
    reworded: int = 0
    kb_changed: int = 0
    kinds: Counter = field(default_factory=Counter)  # DECISION_CHANGED or OTHER_CHANGE -> rows
    pairs: Counter = field(default_factory=Counter)  # (decision then, decision now) of decision changes
    criteria: dict = field(default_factory=dict)  # kind -> Counter((criterion, then, now))
    listing: dict = field(default_factory=dict)  # kind -> _Spool of entries (JSON)
    pages: dict = field(default_factory=dict)  # kind -> _Spool of pages

    def kept(self) -> list:
        """(kind, how many) listed: decision changes first, up to limit in all."""
        first = min(len(self.listing.get(DECISION_CHANGED, ())), self.limit)
        return [(DECISION_CHANGED, first),
                (OTHER_CHANGE, min(len(self.listing.get(OTHER_CHANGE, ())), self.limit - first))]

    @property
    def listed(self) -> int:
        return sum(n for _, n in self.kept())

    def entries(self) -> Iterator[dict]:
        for kind, count in self.kept():
            if kind in self.listing:
                for line in self.listing[kind].read(count):
                    yield json.loads(line)

    def embedded(self) -> Iterator[str]:
        from markupsafe import Markup

        for kind, count in self.kept():
            if kind in self.pages:
                for page in self.pages[kind].read(count):
                    yield Markup(page)

    def close(self) -> None:
        for spools in (self.listing, self.pages):
            for spool in spools.values():
                spool.close()


def _range(since: Optional[str], until: Optional[str]) -> dict:
    return {"since": since, "until": until}


def tally(connection: sqlite3.Connection, since: Optional[str] = None,
          until: Optional[str] = None, include_what_if: bool = False) -> Tally:
    from covkb.surfaces.audit import rows

    counted = Tally(include_what_if)
    columns = ("id, logged_at, policy_version, decision, label, criteria_json, explanation_json, "
               "kb_sha256, covkb_version, row_hash")
    for row in rows(connection, columns=columns, **_range(since, until)):
        counted.add(row)
    return counted


def change(row, now) -> Optional[dict]:
    """How a logged row and its decision now differ: None when only the words of their
    reasons do; else its kind (the decision changed, or only criteria, label or version)
    and every criterion whose status changed ("-" where a criterion is absent)."""
    then = {c["id"]: c["status"] for c in json.loads(row["criteria_json"])}
    ids = {c.id for c in now.criteria}
    changed = [[c.id, then.get(c.id, "-"), c.status] for c in now.criteria if then.get(c.id) != c.status]
    changed += [[ident, status, "-"] for ident, status in then.items() if ident not in ids]
    before = [row["policy_version"], row["decision"], row["label"]]
    after = [now.version, now.decision, now.label]
    if not changed and before == after:
        return None
    return {"id": row["id"], "case_id": row["case_id"], "logged_at": row["logged_at"],
            "what_if": bool(row["version_requested"]),
            "kind": DECISION_CHANGED if before[1] != after[1] else OTHER_CHANGE,
            "then": before, "now": after, "changed": changed}


REPLAY_COLUMNS = ("id", "case_id", "logged_at", "what_if", "kind", "then_version", "then_decision", "then_label",
                  "now_version", "now_decision", "now_label", "criteria_changed", "kb_changed")


def replay_record(row, now, kb_changed: bool) -> dict:
    """One row `covkb audit replay` found deciding differently, as a flat record: its kind is
    `decision` (the decision changed), `criteria` (only criteria, label or version),
    `reworded` (decided alike in other words) or `unreadable` (its input no longer reads)."""
    if isinstance(now, str):
        entry = {"kind": "unreadable", "now": [None, None, None], "changed": [], "error": now}
    else:
        entry = change(row, now) or {"kind": "reworded", "now": [now.version, now.decision, now.label],
                                     "changed": []}
    then = [row["policy_version"], row["decision"], row["label"]]
    record = {"id": row["id"], "case_id": row["case_id"], "logged_at": row["logged_at"],
              "what_if": bool(row["what_if"]), "kind": entry["kind"],
              **dict(zip(("then_version", "then_decision", "then_label"), then)),
              **dict(zip(("now_version", "now_decision", "now_label"), entry["now"])),
              "criteria_changed": "; ".join(f"{i} {a}->{b}" for i, a, b in entry["changed"]),
              "kb_changed": bool(kb_changed)}
    if "error" in entry:
        record["error"] = entry["error"]
    return record


def redecided(connection: sqlite3.Connection, counted: Tally, since: Optional[str] = None,
              until: Optional[str] = None, everything: bool = False, log: Optional[str] = None,
              chunk: int = 500, workers: Optional[int] = None, limit: int = LIMIT) -> Redecided:
    """Re-decide the rows logged under another kb or covkb (every row with `everything`);
    a determination logged under the current kb and covkb is what they decide now.
    What-ifs are re-decided only when the tally counts them."""
    from covkb.surfaces.audit import kb_hash, rows

    current = kb_hash()
    found = Redecided(limit)
    stale = sum(n for (kb, covkb), n in counted.logged_under.items()
                if kb != current or covkb != __version__)
    if not everything and not stale:
        return found

    def stored():
        for row in rows(connection, **_range(since, until)):
            if row["what_if"] and not counted.include_what_if:
                continue
            if everything or row["kb_sha256"] != current or row["covkb_version"] != __version__:
                found.considered += 1
                yield dict(row)

    macro = _environment().get_template("_determination.html").module.determination
    stored_type = _explanation_type()
    if workers is None:
        workers = 1 if (counted.rows if everything else stale) <= chunk else os.cpu_count() or 1
    for row, now, explanation, kb_changed in _redecide_parallel(stored(), current, chunk, workers):
        entry = change(row, now)
        if entry is None:
            found.reworded += 1  # decided alike; only the words of its reasons differ
            continue
        kind = entry["kind"]
        found.count += 1
        found.kb_changed += kb_changed
        found.kinds[kind] += 1
        if kind == DECISION_CHANGED:
            found.pairs[entry["then"][1], entry["now"][1]] += 1
        found.criteria.setdefault(kind, Counter()).update(tuple(c) for c in entry["changed"])
        listing = found.listing.setdefault(kind, _Spool())
        if len(listing) >= limit:
            continue
        entry["kb_changed"] = kb_changed
        listing.write(json.dumps(entry))
        now_words = {"decision": now.decision, "label": now.label, "version": now.version,
                     "reason": getattr(explanation, "reason", None) or explanation.sentence}
        page = str(macro(msgspec.json.decode(row["explanation_json"], type=stored_type),
                         Provenance.of_row(row, log), 3, f"d{row['id']}", {}, now_words))
        found.pages.setdefault(kind, _Spool()).write(page)
    return found


def _redecide_parallel(stored: Iterator[dict], current: str, chunk: int, workers: int):
    """The rows decided differently now, in id order, as batch decides them (covkb.surfaces.batch.Replay)."""
    from covkb.surfaces.batch import Replay

    replayed = Replay(stored, current, chunk, workers, explained=True)
    yield from replayed
    if replayed.choice is not None:
        sys.stderr.write(f"covkb: replayed by the {replayed.choice.engine} engine\n")


def _explanation_type():
    from covkb.results.explain import Explanation

    return Explanation


# ---------------------------------------------------------------------------
# The chart: decisions per week, drawn as SVG
# ---------------------------------------------------------------------------
# Each decision has a colour at least 3:1 against white (the segments stand apart on white,
# never touching), of a distinct lightness and hue under the common colour-vision
# deficiencies (Okabe and Ito's blue, vermillion and reddish purple, and near-black), and
# a pattern of its own, so that the chart reads in greyscale and in print.
COLOURS = {"covered": "#004b87", "not_covered": "#d55e00", "pending": "#a23c7a",
           "not_applicable": "#1b1f24"}
PATTERNS = {"covered": "solid", "not_covered": "stripes", "pending": "dots", "not_applicable": "cross"}
GAP = 2  # white space between the segments of one bar, in chart units


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


def week_chart(weeks: Counter, width: int = 720, height: int = 300) -> Optional[Chart]:
    """Stacked bars, one per week from the first to the last logged, empty weeks kept."""
    if not weeks:
        return None
    mondays = sorted({monday for monday, _ in weeks})
    span = [mondays[0] + datetime.timedelta(weeks=n)
            for n in range((mondays[-1] - mondays[0]).days // 7 + 1)]
    left, top, bottom, right = 56, 12, 44, 12
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
            # the segment is drawn GAP short of its share: white between neighbours
            shown = max(size - GAP, 1) if len(counts) > 1 else size
            segments.append((decision, round(base, 2), round(shown, 2), count))
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
    from covkb.engine import reference

    facts = getattr(reference.policy(), "facts", None) or {}
    return {str(args[0]): str(args[1]) for args in facts.get("field_words", ()) if len(args) >= 2}


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _version_key(version: Optional[str]) -> tuple:
    return (version is None, version or "")


def audit_report(connection: sqlite3.Connection, sink: TextIO, since: Optional[str] = None,
                 until: Optional[str] = None, everything: bool = False,
                 log: Optional[str] = None, limit: int = LIMIT, include_what_if: bool = False) -> Tally:
    """Write the report over the determinations logged in [since, until) to sink."""
    from covkb.surfaces.audit import kb_hash

    counted = tally(connection, since, until, include_what_if)
    found = redecided(connection, counted, since, until, everything, log, limit=limit)
    try:
        outcomes = sorted(counted.outcomes.items(),
                          key=lambda item: (_version_key(item[0][0]), _decision_key(item[0][1]), item[0][2]))
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
        missing = [(name, "document", count) for name, count in counted.missing.most_common()]
        missing += [(name, "clarify", count) for name, count in counted.clarify.most_common()]
        missing.sort(key=lambda item: -item[2])
        changes = {kind: sorted(found.criteria.get(kind, Counter()).items(), key=lambda item: (-item[1], item[0]))
                   for kind in (DECISION_CHANGED, OTHER_CHANGE)}
        pairs = sorted(found.pairs.items(), key=lambda item: (-item[1], item[0]))
        template = _environment().get_template("audit.html")
        stream = template.generate(
            t=counted, since=since, until=until, log=log, generated=_now(), covkb=__version__,
            kb=kb_hash(), everything=everything, outcomes=outcomes, by_decision=by_decision,
            decisions=DECISIONS, criteria=criteria, missing=missing,
            field_words=_field_words() if missing else {},
            chart=week_chart(counted.weeks), colours=COLOURS, patterns=PATTERNS, found=found,
            pairs=pairs, changes=changes, entries=found.entries(), pages=found.embedded(),
            share=_share, generator=__version__)
        for text in stream:
            sink.write(neutral(text))
    finally:
        found.close()
    return counted


def _decision_key(decision: str) -> int:
    return DECISIONS.index(decision) if decision in DECISIONS else len(DECISIONS)
