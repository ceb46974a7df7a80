"""Many cases, line by line: decode each, decide valid ones in chunks, write in order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import BinaryIO, Optional, TextIO

from covkb.api import determine
from covkb.case import InvalidCase, from_json
from covkb.render import as_json
from covkb.result import Failure


@dataclass
class Summary:
    cases: int = 0
    invalid: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def line(self) -> str:
        seconds = time.perf_counter() - self.started
        kinds = ", ".join(f"{n} {d}" for d, n in sorted(self.decisions.items()))
        rate = self.cases / seconds if seconds > 0 else 0.0
        return (f"covkb batch: {self.cases} lines, {kinds or 'no decisions'}, "
                f"{self.invalid} invalid; {seconds:.2f} s ({rate:.0f} cases/s)")


def run(source: BinaryIO, sink: TextIO, version: Optional[str] = None,
        chunk: int = 1000) -> Summary:
    summary = Summary()
    pending: list = []  # (line number, Case or Failure) in input order

    def flush() -> None:
        valid = [item for _, item in pending if not isinstance(item, Failure)]
        results = iter(determine(valid, version)) if valid else iter(())
        for _, item in pending:
            out = item if isinstance(item, Failure) else next(results)
            if isinstance(out, Failure):
                summary.invalid += 1
            else:
                summary.decisions[out.decision] = summary.decisions.get(out.decision, 0) + 1
            sink.write(as_json(out) + "\n")
        pending.clear()

    valid_count = 0
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        summary.cases += 1
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            item = from_json(raw)
            valid_count += 1
        except InvalidCase as error:
            message = error.message
            if raw.lstrip().startswith(b"["):
                message += "; batch reads JSON Lines, one case object per line, not a JSON array"
            item = Failure(case_id=error.case_id, line=number, error=message)
        pending.append((number, item))
        if valid_count >= chunk:
            flush()
            valid_count = 0
    flush()
    return summary
