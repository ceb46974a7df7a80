"""Many cases, line by line: decode each, decide valid ones together in chunks, write in
input order. Reading and writing stream; memory holds only the chunks in flight."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, TextIO

from covkb.input.case import MAX_CASE_BYTES, InvalidCase
from covkb.input.text import from_json
from covkb.results.result import Failure

# (number of its first line, its lines as read): one bytes object crosses to a worker,
# one string of result lines comes back.
Chunk = tuple[int, bytes]
# A chunk also ends at this many bytes, so memory stays bounded whatever the lines hold.
MAX_CHUNK_BYTES = 8 * MAX_CASE_BYTES
# Lines per chunk unless asked otherwise: the compiled engine evaluates its whole program
# once per chunk whatever the chunk holds, so its chunks are big; clingo grounds a chunk's
# cases together, and its memory grows with the chunk.
CHUNK = {"compiled": 2000, "clingo": 500}


def chunk_size(chunk: Optional[int]) -> int:
    """The lines per chunk: `chunk` when given, else clingo's under COVKB_ENGINE=clingo and
    the compiled engine's otherwise (a kb/ it refuses is then decided by clingo, in chunks
    of that size; the refusal is said when the run starts)."""
    if chunk:
        return chunk
    from covkb.engine.choose import engine_name

    return CHUNK["clingo" if engine_name() == "clingo" else "compiled"]


class CouldNotFinish(Exception):
    """The run stopped before every line was decided (I/O failure, the log, a signal)."""


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
    prepared: list[dict]  # decision-log rows, with log; a replay's rows decided differently

    @staticmethod
    def joined(parts: list["Decided"]) -> "Decided":
        decisions: Counter = Counter()
        for part in parts:
            decisions.update(part.decisions)
        return Decided("".join(p.text for p in parts), sum(p.cases for p in parts), decisions,
                       sum(p.invalid for p in parts), sum(p.blank for p in parts),
                       [row for p in parts for row in p.prepared])


def _unexpected(error: BaseException) -> str:
    return f"could not be decided ({type(error).__name__}: {str(error)[:200]})"


def decide_chunk(chunk: Chunk, version: Optional[str] = None, log: bool = False) -> Decided:
    """Result lines for one chunk of raw lines, in order; with log, the rows to record."""
    return _without_collector(_decide_chunk, chunk, version, log)


def _without_collector(work: Callable, *args):
    # A chunk allocates some hundred thousand objects that reference counting frees;
    # the cycle collector would walk them again and again while they live.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return work(*args)
    finally:
        if enabled:
            gc.enable()


def _decide_chunk(chunk: Chunk, version: Optional[str], log: bool) -> Decided:
    from covkb.results.render import as_json

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
            items.append((number, from_json(raw)))
        except InvalidCase as error:
            message = error.message
            if raw.lstrip().startswith(b"["):
                message += "; batch reads JSON Lines, one case object per line, not a JSON array"
            items.append((number, Failure(case_id=error.case_id, line=number, error=message)))
        except Exception as error:  # whatever a line holds, it costs only its own line
            items.append((number, Failure(case_id=None, line=number, error=_unexpected(error))))
    valid = [(number, item) for number, item in items if not isinstance(item, Failure)]
    try:
        decided = _decide(valid, version, log)
    except Exception:
        decided = {}
        for one in valid:  # one case at a time, so only the case at fault fails
            try:
                decided.update(_decide([one], version, log))
            except Exception as error:
                decided[one[0]] = (Failure(case_id=one[1].case_id, line=one[0], error=_unexpected(error)), None)
    out, decisions, invalid, prepared = [], Counter(), 0, []
    for number, item in items:
        result, row = (item, None) if isinstance(item, Failure) else decided[number]
        if isinstance(result, Failure):
            invalid += 1
        else:
            decisions[result.decision] += 1
        if row is not None:
            prepared.append(row)
        out.append(as_json(result))
    text = "\n".join(out) + "\n" if out else ""
    return Decided(text, len(out), decisions, invalid, blank, prepared)


def _decide(valid: list, version: Optional[str], log: bool) -> dict:
    """line number → (result, decision-log row or None) for each valid case."""
    from covkb.api import determine, determine_explained

    if not valid:
        return {}
    cases = [case for _, case in valid]
    if not log:
        return {number: (result, None) for (number, _), result in zip(valid, determine(cases, version))}
    from covkb.surfaces.audit import kb_hash, prepare

    pairs = determine_explained(cases, version)
    return {number: (result, prepare(case, version, result, explanation, kb_hash()))
            for (number, case), (result, explanation) in zip(valid, pairs)}


def chunks(source: BinaryIO, size: int, max_bytes: int = MAX_CHUNK_BYTES) -> Iterator[Chunk]:
    """The source's lines, `size` at a time (fewer when they reach max_bytes)."""
    number = 1
    lines = _lines(source)
    while True:
        taken: list[bytes] = []
        held = 0
        for line in lines:
            taken.append(line)
            held += len(line)
            if len(taken) >= size or held >= max_bytes:
                break
        if not taken:
            return
        yield number, b"".join(taken)
        number += len(taken)


def _lines(source: BinaryIO, limit: int = MAX_CASE_BYTES) -> Iterator[bytes]:
    """Each line, read with the limit: of a longer line only limit + 1 bytes are kept
    (enough for it to be refused as too long), the rest is read past, never held."""
    try:
        while True:
            line = source.readline(limit + 1)
            if not line:
                return
            if len(line) > limit and not line.endswith(b"\n"):
                while True:
                    rest = source.readline(1 << 16)
                    if not rest or rest.endswith(b"\n"):
                        break
                line += b"\n"
            yield line
    except OSError as error:
        raise CouldNotFinish(f"reading the cases failed ({error.strerror or error})") from None


def _stopped_worker(number: int, code: Optional[int]) -> Decided:
    from covkb.results.render import as_json

    how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    failure = Failure(case_id=None, line=number,
                      error=f"could not be decided: the worker process deciding it stopped ({how})")
    return Decided(as_json(failure) + "\n", 1, Counter(), 1, 0, [])


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the batch process dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, ImportError):  # not Linux, or no ctypes: the closed pipe ends the worker instead
        pass


def _serve(connection, parent: int, decide: Callable, version: Optional[str], log: bool,
           tasks: int) -> None:
    """A worker: decide up to `tasks` pieces, then exit to give back clingo's memory."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the batch process decides what ^C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        if os.getppid() != parent:
            raise EOFError
        for _ in range(tasks):
            piece = connection.recv()
            if piece is None:  # the batch process is done with this worker
                break
            connection.send(decide(piece, version, log))
    except (EOFError, OSError):  # the batch process is gone: nobody to answer
        code = 0
    except BaseException:  # the batch process sees the closed pipe and retries the piece
        code = 70
    finally:
        os._exit(code)


class _Workers:
    """Worker processes, each deciding one piece at a time and recycled after `tasks`
    pieces; a worker that dies is replaced, and its piece retried line by line."""

    def __init__(self, count: int, tasks: int, decide: Callable, version: Optional[str], log: bool):
        import multiprocessing

        self.context = multiprocessing.get_context("fork")
        self.args = (decide, version, log, max(tasks, 1))
        self.idle: list = []
        self.busy: dict = {}  # connection → (process, task)
        for _ in range(max(count, 1)):
            self.idle.append(self._start())

    def _start(self):
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(theirs, os.getpid(), *self.args), daemon=True)
        process.start()
        theirs.close()
        return [process, ours, 0]

    def give(self, task) -> None:
        worker = self.idle.pop()
        worker[1].send(task[1])
        worker[2] += 1
        self.busy[worker[1]] = (worker, task)

    def results(self) -> Iterator[tuple[object, Optional[Decided], Optional[int]]]:
        """(task, decided, None) for each answer; (task, None, exit code) for a lost worker."""
        from multiprocessing.connection import wait

        ready = wait(list(self.busy) + [w[0].sentinel for w, _ in self.busy.values()])
        for connection, (worker, task) in list(self.busy.items()):
            if connection not in ready and worker[0].sentinel not in ready:
                continue
            del self.busy[connection]
            try:
                decided = connection.recv() if connection.poll() else None
            except (EOFError, OSError):
                decided = None
            if decided is None:
                self._retire(worker)
                yield task, None, worker[0].exitcode
                self.idle.append(self._start())
            else:
                if worker[2] >= self.args[3]:
                    self._retire(worker)
                    worker = self._start()
                self.idle.append(worker)
                yield task, decided, None

    def _retire(self, worker) -> None:
        worker[1].close()
        worker[0].join(timeout=5)
        if worker[0].exitcode is None:
            worker[0].kill()
            worker[0].join()

    def close(self) -> None:
        for worker in self.idle:
            # told, not left to read EOF: a worker forked later holds a copy of this pipe's
            # end, so closing it here alone would not end the worker
            try:
                worker[1].send(None)
            except (OSError, ValueError):
                pass
        for worker in self.idle + [w for w, _ in self.busy.values()]:
            worker[1].close()
        for worker in self.idle + [w for w, _ in self.busy.values()]:
            worker[0].join(timeout=0.5)
            if worker[0].exitcode is None:
                worker[0].kill()
                worker[0].join()
        self.idle, self.busy = [], {}


def _in_order(work: Iterable[Chunk], version: Optional[str], workers: int,
              chunks_per_worker: int, log: bool, decide: Callable = decide_chunk,
              chosen: Optional[list] = None) -> Iterator[tuple[Chunk, Decided]]:
    # Workers fork from this process: load the modules and the policy once, here.
    from covkb import api  # noqa: F401
    from covkb.results import render  # noqa: F401
    from covkb.engine.choose import choose

    api.versions()
    work = iter(work)
    first = next(work, None)
    if first is not None:  # compile kb/ here, once, when the chunks are big enough to use it
        choice = choose(first[1].count(b"\n"))
        if chosen is not None:
            chosen.append(choice)
        if choice.refused:  # said whatever --verbose: the run is slower than it should be
            print(f"covkb: {choice.why}", file=sys.stderr, flush=True)
        work = chain([first], work)
    gc.freeze()
    # clingo keeps every symbol for the life of a process: workers are recycled, also one alone.
    pool = _Workers(workers, chunks_per_worker, decide, version, log)
    try:
        work = iter(work)
        chunk_of: dict[int, Chunk] = {}
        queue: deque = deque()  # (sequence, piece, line index or None)
        parts: dict[int, list] = {}  # sequence → results of its lines, retried one by one
        done: dict[int, Decided] = {}
        read = written = 0
        exhausted = False
        while True:
            while not exhausted and read - written < 2 * max(workers, 1):
                chunk = next(work, None)
                if chunk is None:
                    exhausted = True
                    break
                chunk_of[read] = chunk
                queue.append((read, chunk, None))
                read += 1
            while pool.idle and queue:
                pool.give(queue.popleft())
            while written in done:
                yield chunk_of.pop(written), done.pop(written)
                written += 1
            if exhausted and written == read:
                return
            if not pool.busy:  # all that was read is written (so none is queued): read on
                continue
            for (sequence, piece, index), decided, code in pool.results():
                if decided is None and index is None:
                    first, blob = piece
                    lines = blob.split(b"\n")
                    if lines and not lines[-1]:
                        lines.pop()
                    parts[sequence] = [None] * len(lines)
                    queue.extendleft(reversed([(sequence, (first + i, line + b"\n"), i)
                                               for i, line in enumerate(lines)]))
                    continue
                if decided is None:
                    decided = _stopped_worker(piece[0], code)
                if index is None:
                    done[sequence] = decided
                    continue
                parts[sequence][index] = decided
                if all(part is not None for part in parts[sequence]):
                    done[sequence] = Decided.joined(parts.pop(sequence))
    finally:
        pool.close()


# ---------------------------------------------------------------------------------------
# Replay: the decision log's stored inputs decided again, through the same worker processes
# ---------------------------------------------------------------------------------------
REPLAYED = ("input_json", "version_requested", "policy_version", "decision", "label", "criteria_json",
            "kb_sha256")


class Replay:
    """The stored rows that the current knowledge base decides differently, in id order, as
    (row, now, explanation, kb changed): `now` the Result (or why the input no longer reads
    as a case), `explanation` with explained, else None. Chunks are decided by worker
    processes, as batch decides them; `choice` says which engine decided, once started."""

    def __init__(self, stored: Iterable[dict], current: str, chunk: Optional[int] = None, workers: int = 1,
                 explained: bool = False):
        self.stored, self.current, self.chunk = iter(stored), current, chunk
        self.workers, self.explained = max(workers, 1), explained
        self.chosen: list = []
        self.held: dict[int, dict] = {}

    @property
    def choice(self):
        return self.chosen[0] if self.chosen else None

    def _pieces(self) -> Iterator[Chunk]:
        import json

        size = chunk_size(self.chunk)
        number = 0
        while True:
            lines = []
            for row in self.stored:
                # the logged explanation (the bulk of a row) is kept only for a report's pages
                self.held[number + len(lines)] = row if self.explained else \
                    {k: v for k, v in row.items() if k != "explanation_json"}
                lines.append(json.dumps({k: row[k] for k in REPLAYED}).encode() + b"\n")
                if len(lines) >= size:
                    break
            if not lines:
                return
            yield number, b"".join(lines)
            number += len(lines)

    def __iter__(self):
        for (first, blob), decided in _in_order(self._pieces(), self.current, self.workers, 50,
                                                self.explained, replay_chunk, self.chosen):
            count = blob.count(b"\n")
            if decided.text:  # a row whose worker stopped twice: said, not skipped
                row = self.held[first]
                yield row, _stopped_message(decided.text), None, row["kb_sha256"] != self.current
            for index, now, explanation, kb_changed in decided.prepared:
                yield self.held[index], now, explanation, kb_changed
            for index in range(first, first + count):
                self.held.pop(index, None)


def replay(connection, ident: Optional[int] = None, chunk: Optional[int] = None,
           workers: int = 0):
    """Re-decide stored inputs with the current knowledge base as batch decides (chunks on
    worker processes, 0: one per core), reading the log a chunk at a time: a
    Replay of (row, now, explanation, kb changed) for each that differs, in id order; `now`
    is an error message when the stored input no longer reads as a case."""
    from covkb.surfaces.audit import kb_hash, rows

    stored = (dict(row) for row in rows(connection, ident=ident))
    return Replay(stored, kb_hash(), chunk, workers or os.cpu_count() or 1)


def _stopped_message(text: str) -> str:
    import json

    return json.loads(text.splitlines()[0]).get("error", "could not be decided")


def replay_chunk(chunk: Chunk, current: str, explained: bool) -> Decided:
    """A worker's part of Replay: the piece's rows decided again (compared with what was
    logged), the explanation made only for those decided differently."""
    return _without_collector(_replay_chunk, chunk, current, explained)


def _replay_chunk(chunk: Chunk, current: str, explained: bool) -> Decided:
    import json

    from covkb.api import determine, determine_explained
    from covkb.results.render import canonical

    first, blob = chunk
    rows = [json.loads(line) for line in blob.split(b"\n") if line]
    differ: list[tuple] = []
    by_version: dict = {}
    for index, row in enumerate(rows, start=first):
        try:
            case = from_json(row["input_json"])
        except InvalidCase as error:
            differ.append((index, f"the stored input no longer reads as a case ({error.message})", None,
                           row["kb_sha256"] != current))
            continue
        by_version.setdefault(row["version_requested"], []).append((index, row, case))
    for version, group in by_version.items():
        changed = [(index, row, case, result) for (index, row, case), result
                   in zip(group, determine([case for _, _, case in group], version))
                   if (result.version, result.decision, result.label, canonical(result.criteria))
                   != (row["policy_version"], row["decision"], row["label"], row["criteria_json"])]
        if explained and changed:
            pairs = determine_explained([case for _, _, case, _ in changed], version)
        else:
            pairs = [(result, None) for _, _, _, result in changed]
        differ += [(index, result, explanation, row["kb_sha256"] != current)
                   for (index, row, _, _), (result, explanation) in zip(changed, pairs)]
    differ.sort(key=lambda item: item[0])
    return Decided("", len(rows), Counter(), 0, 0, differ)


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


def run(source: BinaryIO, sink: TextIO, version: Optional[str] = None, chunk: Optional[int] = None,
        workers: int = 1, chunks_per_worker: int = 50, progress: bool = False,
        log=None) -> Summary:
    """Decide every line of source into sink; with log (an open decision log), record
    each chunk's determinations in one transaction before its results are written, so
    no result is ever shown for a determination that was not logged. `chunk`: lines per
    chunk, by default chunk_size()'s."""
    import sqlite3

    summary = Summary()
    try:
        size: Optional[int] = os.fstat(source.fileno()).st_size or None
    except (OSError, AttributeError, ValueError):
        size = None
    meter = Progress(size, progress)
    with _stopped_by_signals():
        for done, decided in _in_order(chunks(source, chunk_size(chunk)), version, workers, chunks_per_worker,
                                       log is not None):
            if log is not None:
                from covkb.surfaces.audit import append

                try:
                    append(log, decided.prepared)
                except sqlite3.Error as error:
                    raise CouldNotFinish(f"the decision log could not be written ({error}); "
                                         f"{summary.cases} results were logged and written before it") from None
            try:
                sink.write(decided.text)
                sink.flush()
            except OSError as error:
                raise CouldNotFinish(f"writing the results failed ({error.strerror or error})") from None
            summary.cases += decided.cases
            summary.invalid += decided.invalid
            summary.blank += decided.blank
            summary.decisions.update(decided.decisions)
            meter.update(summary, done)
    meter.close()
    return summary


@contextmanager
def _stopped_by_signals():
    """SIGTERM and SIGHUP end the run as CouldNotFinish, so workers are stopped and a
    half-written --out is removed rather than left behind."""
    def stop(number, frame):
        raise CouldNotFinish(f"stopped by signal {signal.Signals(number).name}")

    try:
        previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def output(out: Optional[Path], inputs: Iterable[Path] = ()):
    """Where results go: standard output, or `out` written beside itself under a temporary
    name and renamed over it only when the run finishes, so it is never half-written and
    never emptied by a run that stops; refuses to be one of `inputs`.

    A symbolic link is written through: the file it names is replaced and the link stays.
    A link that names nothing (dangling, or a loop) is refused rather than followed to
    create whatever it points at. A device or pipe is written as it is."""
    if out is None:
        yield sys.stdout
        return
    if out.is_symlink() and not out.exists():
        raise InvalidCase("--out", str(out), f"is a symbolic link to {os.readlink(out)}, which names no file: "
                                             "give the file to write, or create what the link names")
    for given in inputs:
        if str(given) != "-" and _same_file(out, given):
            raise InvalidCase("--out", str(out), f"is the input {given}: it would be overwritten")
    if out.is_dir():
        raise InvalidCase("--out", str(out), "is a directory")
    if out.is_symlink() and out.is_file():
        out = Path(os.path.realpath(out))
    if not out.parent.is_dir():
        raise InvalidCase("--out", str(out), f"no such directory {out.parent}")
    if out.exists() and not out.is_file():  # a device or pipe (/dev/null, /dev/stdout): written as it is
        try:
            with open(out, "w", encoding="utf-8") as sink:
                yield sink
        except OSError as error:
            raise CouldNotFinish(f"{out}: {error.strerror or error}") from None
        return
    import tempfile

    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as error:
        raise CouldNotFinish(f"{out}: cannot write there ({error.strerror or error})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
    try:
        with open(handle, "w", encoding="utf-8") as sink:
            yield sink
        os.replace(temporary, out)
    except OSError as error:
        raise CouldNotFinish(f"{out}: {error.strerror or error}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return one.resolve() == other.resolve()
