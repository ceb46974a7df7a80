"""Many cases, line by line: decode each, decide valid ones together in chunks, write in
input order. Reading and writing stream; memory holds only the chunks in flight."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Optional, TextIO

from covkb.case import InvalidCase, from_json
from covkb.result import Failure

Chunk = list[tuple[int, bytes]]  # (line number, raw line)


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


def decide_chunk(chunk: Chunk, version: Optional[str] = None,
                 log: bool = False) -> tuple[list[str], Counter, int, list[dict]]:
    """Result lines for one chunk of raw lines, the decisions made, the invalid count,
    and (with log) the decision-log rows to record."""
    from covkb.api import determine, determine_explained
    from covkb.render import as_json

    items: list = []
    for number, raw in chunk:
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
    lines, decisions, invalid = [], Counter(), 0
    for item in items:
        out = item if isinstance(item, Failure) else next(results)
        if isinstance(out, Failure):
            invalid += 1
        else:
            decisions[out.decision] += 1
        lines.append(as_json(out))
    return lines, decisions, invalid, prepared


def chunks(source: BinaryIO, size: int, summary: Optional[Summary] = None) -> Iterator[Chunk]:
    chunk: Chunk = []
    for number, raw in enumerate(source, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            if summary is not None:
                summary.blank += 1
            continue
        chunk.append((number, raw))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _in_order(work: Iterable[Chunk], version: Optional[str], workers: int,
              chunks_per_worker: int, log: bool) -> Iterator[tuple[Chunk, tuple]]:
    if workers <= 1:
        for chunk in work:
            yield chunk, decide_chunk(chunk, version, log)
        return
    import multiprocessing

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
        self.done_bytes += sum(len(raw) for _, raw in chunk)
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
    for done, (lines, decisions, invalid, prepared) in _in_order(
            chunks(source, chunk, summary), version, workers, chunks_per_worker, log is not None):
        sink.write("\n".join(lines) + "\n")
        if log is not None:
            from covkb.audit import append

            append(log, prepared)
        summary.cases += len(lines)
        summary.invalid += invalid
        summary.decisions.update(decisions)
        meter.update(summary, done)
    meter.close()
    return summary
