"""The deciders of covkb serve: threads that take the requests waiting, decide them together
through the one decider (covkb.api), log their determinations, and answer each; with
worker processes, each thread hands its requests to one of them."""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Optional

# Requests one grounding decides at most: enough to drain any queue the clients can fill,
# few enough that the first of them is not kept waiting long.
MAX_BATCH = 256
# Batches a worker process decides before it is replaced.
BATCHES_PER_WORKER = 2000


def error_body(message: str) -> str:
    return json.dumps({"error": message})


def log_line(message: str) -> None:
    print(f"covkb serve: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Deciding: runs on a decider thread, or in a worker process
# ---------------------------------------------------------------------------
def decide_requests(requests: list[tuple], log: bool, engine: Optional[str] = None) -> list[tuple[object, list[dict]]]:
    """Decide every (kind, case, version, sources, context, pas) in one grounding: for each,
    its JSON body (a PAS response Bundle dict when pas) and, with log, the decision-log rows to
    record (one per version decided). sources name the FHIR resource of each field."""
    from covkb.api import decide, versions
    from covkb.results.explain import comparison
    from covkb.results.render import as_json

    every = sorted(versions())
    asked, explained, sources, own = [], [], [], []
    for kind, case, version, source, *_ in requests:
        wanted = every if kind == "compare" else [version]
        own.append(range(len(asked), len(asked) + len(wanted)))
        asked.extend((case, one) for one in wanted)
        explained.extend([kind != "check" or log] * len(wanted))  # a check's explanation only for the log
        sources.extend([source] * len(wanted))
    decided = decide(asked, explained=explained, engine=engine, sources=sources)
    kb = None
    if log:
        from covkb.surfaces.audit import kb_hash, prepare

        kb = kb_hash()
    answers = []
    for (kind, case, version, _, context, pas), keys in zip(requests, own):
        mine = [decided[key] for key in keys]
        if kind == "check" and pas:
            from covkb.fhir.responses import pas_response

            body = pas_response(mine[0].result, context)
        elif kind == "check":
            body = as_json(mine[0].result)
        elif kind == "explain":
            body = as_json(mine[0].explanation)
        else:
            body = as_json(comparison(case.case_id, [one.explanation for one in mine]))
        rows = [prepare(case, one.version, one.result, one.explanation, kb) for one in mine] if log else []
        answers.append((body, rows))
    return answers


def _worker_start(engine: Optional[str]) -> None:
    # The server decides when to stop; the policy and the engine are loaded before the first request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from covkb.engine import choose, reference

    reference.policy()
    choose.prepare(MAX_BATCH, engine=engine)


def server_engine() -> Optional[str]:
    """A server lives long enough for the compiled engine to pay for itself: unless
    COVKB_ENGINE names another (None: the environment's then decides), kb/ is compiled
    once at start and decides every batch, however small."""
    from covkb.engine import choose

    return "compiled" if choose.engine_name() == "auto" else None


class Pending:
    """One request waiting for its decision."""

    __slots__ = ("kind", "case", "version", "sources", "context", "pas", "done", "status", "body",
                 "decision_id")

    def __init__(self, kind: str, case, version: Optional[str], sources: dict, context: Optional[dict],
                 pas: bool):
        self.kind, self.case, self.version = kind, case, version
        self.sources, self.context, self.pas = sources, context, pas
        self.done = threading.Event()
        self.status, self.body, self.decision_id = 500, "", None

    def answer(self, status: int, body: str, decision_id=None) -> None:
        self.status, self.body, self.decision_id = status, body, decision_id
        self.done.set()


_STOP = object()


class Decider:
    """Threads that take the waiting requests, decide them together, log, and answer."""

    def __init__(self, workers: int, log: Optional[Path], engine: Optional[str] = None):
        self.log = log
        self.engine = engine
        # requests in a row that could not be decided, and why the last one: /health
        self.failures, self.failure = 0, None
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pool = None
        self.replacing = threading.Lock()
        self.workers = workers
        if workers > 0:
            self.pool = self._pool()
            self.pool.submit(decide_requests, [], False, engine).result()  # a worker up before the first request
        self.threads = [threading.Thread(target=self._run, name=f"covkb-decider-{n}")
                        for n in range(max(workers, 1))]
        for thread in self.threads:
            thread.start()

    def _pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: workers fork from a process without this one's threads
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["covkb.surfaces.deciders", "covkb.api", "covkb.results.explain", "covkb.surfaces.audit"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_start,
                                   initargs=(self.engine,), max_tasks_per_child=BATCHES_PER_WORKER)

    def submit(self, pending: Pending) -> None:
        self.queue.put(pending)

    def close(self) -> None:
        """Decide what was submitted, then stop."""
        self.queue.put(_STOP)
        for thread in self.threads:
            thread.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _run(self) -> None:
        connection = None
        if self.log is not None:
            from covkb.surfaces import audit

            connection = audit.connect(self.log)
        try:
            stopping = False
            while not stopping:
                first = self.queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stopping = True
                        break
                    batch.append(more)
                try:
                    self._decide(batch, connection)
                except Exception as error:  # never leave a client waiting, never lose the decider
                    log_line(f"could not answer: {type(error).__name__}: {error}")
                    self.failures, self.failure = self.failures + 1, f"{type(error).__name__}: {error}"[:300]
                    for pending in batch:
                        if not pending.done.is_set():
                            pending.answer(500, error_body(f"could not decide: {type(error).__name__}"))
            self.queue.put(_STOP)  # for the next decider thread
        finally:
            if connection is not None:
                connection.close()

    def _answers(self, batch: list[Pending], log: bool) -> list[tuple[str, list[dict]]]:
        requests = [(p.kind, p.case, p.version, p.sources, p.context, p.pas) for p in batch]
        if self.pool is None:
            return decide_requests(requests, log, self.engine)
        from concurrent.futures.process import BrokenProcessPool

        pool = self.pool
        try:
            return pool.submit(decide_requests, requests, log, self.engine).result()
        except BrokenProcessPool:
            # a worker was lost: one new pool, and these requests decided again on it
            with self.replacing:
                if self.pool is pool:
                    self.pool = self._pool()
                    pool.shutdown(wait=False)
            return self.pool.submit(decide_requests, requests, log, self.engine).result()

    def _decide(self, batch: list[Pending], connection) -> None:
        try:
            answers = self._answers(batch, connection is not None)
        except Exception as error:
            if len(batch) > 1:  # one request must not fail the others: each alone
                for pending in batch:
                    self._decide([pending], connection)
                return
            log_line(f"could not decide {batch[0].case.case_id!r}: {type(error).__name__}: {error}")
            self.failures, self.failure = self.failures + 1, f"{type(error).__name__}: {error}"[:300]
            batch[0].answer(500, error_body(f"could not decide: {type(error).__name__}"))
            return
        self.failures = 0
        if connection is None:
            for pending, (body, _) in zip(batch, answers):
                pending.answer(200, body, uuid.uuid4().hex)
            return
        import sqlite3

        from covkb.surfaces import audit

        rows = [row for _, own in answers for row in own]
        try:
            audit.append(connection, rows)
            last = connection.execute("SELECT last_insert_rowid()").fetchone()[0]
        except (sqlite3.Error, OSError) as error:
            log_line(f"decision log: {error}")
            for pending in batch:
                pending.answer(503, error_body(f"the decision log could not record the decision ({error})"))
            return
        # one transaction: the rows of this batch are numbered consecutively, in order
        ident = last - len(rows) + 1
        for pending, (body, own) in zip(batch, answers):
            pending.answer(200, body, ident)
            ident += len(own)
