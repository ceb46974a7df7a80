"""Many cases, line by line: decode each, decide valid ones together in chunks, write in
input order. Reading and writing stream; memory holds only the chunks in flight."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import Counter, deque
from itertools import islice
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Optional, TextIO

from covkb.case import InvalidCase, from_json
from covkb.result import Failure

# (number of its first line, its lines as read): one bytes object crosses to a worker,
# one string of result lines comes back.
Chunk = tuple[int, bytes]


@dataclass
class Summary:
    cases: int = 0
    invalid: int = 0
    blank: int = 0
    decisions: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def line(self) -> str:
        seconds = self.seconds
        kinds = ", ".join(f"{n} {d}" for d, n in sorted(self.decisions.items()))
        rate = self.cases / seconds if seconds > 0 else 0.0
        blank = f", {self.blank} blank lines skipped" if self.blank else ""
        return (f"covkb batch: {self.cases} cases, {kinds or 'no decisions'}, "
                f"{self.invalid} invalid{blank}; {seconds:.2f} s ({rate:.0f} cases/s)")


@dataclass
class Decided:
    """A chunk decided: its result lines, ready to write, and what the summary counts."""

    text: str
    cases: int
    decisions: Counter
    invalid: int
    blank: int
    prepared: list[dict]  # decision-log rows, with log


def decide_chunk(chunk: Chunk, version: Optional[str] = None, log: bool = False) -> Decided:
    """Result lines for one chunk of raw lines, in order; with log, the rows to record."""
    # A chunk allocates some hundred thousand objects that reference counting frees;
    # the cycle collector would walk them again and again while they live.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _decide_chunk(chunk, version, log)
    finally:
        if enabled:
            gc.enable()


def _decide_chunk(chunk: Chunk, version: Optional[str], log: bool) -> Decided:
    from covkb.api import determine, determine_explained
    from covkb.render import as_json

    first, blob = chunk
    lines = blob.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline ending the chunk's last line
    items: list = []
    blank = 0
    for number, raw in enumerate(lines, start=first):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            blank += 1
            continue
        try:
            items.append(from_json(raw))
        except InvalidCase as error:
            message = error.message
            if raw.lstrip().startswith(b"["):
                message += "; batch reads JSON Lines, one case object per line, not a JSON array"
            items.append(Failure(case_id=error.case_id, line=number, error=message))
    valid = [item for item in items if not isinstance(item, Failure)]
    prepared: list[dict] = []
    if log and valid:
        from covkb.audit import kb_hash, prepare

        pairs = determine_explained(valid, version)
        prepared = [prepare(case, version, result, explanation, kb_hash())
                    for case, (result, explanation) in zip(valid, pairs)]
        results = iter([result for result, _ in pairs])
    else:
        results = iter(determine(valid, version)) if valid else iter(())
    out, decisions, invalid = [], Counter(), 0
    for item in items:
        result = item if isinstance(item, Failure) else next(results)
        if isinstance(result, Failure):
            invalid += 1
        else:
            decisions[result.decision] += 1
        out.append(as_json(result))
    text = "\n".join(out) + "\n" if out else ""
    return Decided(text, len(out), decisions, invalid, blank, prepared)


def chunks(source: BinaryIO, size: int) -> Iterator[Chunk]:
    """The source's lines, `size` at a time."""
    number = 1
    while True:
        lines = list(islice(source, size))
        if not lines:
            return
        yield number, b"".join(lines)
        number += len(lines)


def _in_order(work: Iterable[Chunk], version: Optional[str], workers: int,
              chunks_per_worker: int, log: bool) -> Iterator[tuple[Chunk, Decided]]:
    if workers <= 1:
        for chunk in work:
            yield chunk, decide_chunk(chunk, version, log)
        return
    import multiprocessing

    # Workers fork from this process: load the modules and the policy once, here.
    from covkb import api, render  # noqa: F401

    api.versions()
    gc.freeze()
    # clingo keeps every symbol for the life of a process: recycle workers.
    with multiprocessing.get_context("fork").Pool(workers, maxtasksperchild=chunks_per_worker) as pool:
        window: deque = deque()
        for chunk in work:
            window.append((chunk, pool.apply_async(decide_chunk, (chunk, version, log))))
            if len(window) >= 2 * workers:
                done, pending = window.popleft()
                yield done, pending.get()
        while window:
            done, pending = window.popleft()
            yield done, pending.get()


class Progress:
    """Cases done, rate and time left on a terminal's stderr; silent elsewhere."""

    def __init__(self, total_bytes: Optional[int], enabled: bool):
        self.total = total_bytes
        self.enabled = enabled
        self.done_bytes = 0
        self.last = 0.0

    def update(self, summary: Summary, chunk: Chunk, final: bool = False) -> None:
        if not self.enabled:
            return
        self.done_bytes += len(chunk[1])
        now = time.perf_counter()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = summary.cases / max(summary.seconds, 1e-9)
        text = f"\r{summary.cases} cases, {rate:.0f}/s"
        if self.total:
            share = min(self.done_bytes / self.total, 1.0)
            left = summary.seconds * (1 - share) / share if share else 0
            text += f", {100 * share:.0f}%, about {left:.0f} s left"
        sys.stderr.write(text + "   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run(source: BinaryIO, sink: TextIO, version: Optional[str] = None, chunk: int = 1000,
        workers: int = 1, chunks_per_worker: int = 50, progress: bool = False,
        log=None) -> Summary:
    """Decide every line of source into sink; with log (an open decision log), record
    each chunk's determinations in one transaction."""
    summary = Summary()
    try:
        size: Optional[int] = os.fstat(source.fileno()).st_size or None
    except (OSError, AttributeError, ValueError):
        size = None
    meter = Progress(size, progress)
    for done, decided in _in_order(chunks(source, chunk), version, workers, chunks_per_worker,
                                   log is not None):
        sink.write(decided.text)
        if log is not None:
            from covkb.audit import append

            append(log, decided.prepared)
        summary.cases += decided.cases
        summary.invalid += decided.invalid
        summary.blank += decided.blank
        summary.decisions.update(decided.decisions)
        meter.update(summary, done)
    meter.close()
    return summary
