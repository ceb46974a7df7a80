"""Which engine decides: clingo, or the compiled engine for batches big enough to pay
for compiling kb/; and deciding a batch of cases with the engine chosen."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from covkb.engine import reference
from covkb.engine.kb import kb_dir
from covkb.engine.vocabulary import Policy, Shown
from covkb.input.case import Case


# Fewer cases than this are decided by clingo under the engine "auto": compiling kb/
# takes seconds once per process, which one `covkb check` must not pay.
COMPILED_FROM = 200


ENGINES = ("auto", "compiled", "clingo")


class EngineChoice(Exception):
    """An engine name that names no engine: a usage error."""


def engine_name(engine: Optional[str] = None) -> str:
    """The engine asked for: `engine` when given, else COVKB_ENGINE, else auto. clingo
    solves everything; compiled decides with kb/ ground once; auto is compiled for
    batches of COMPILED_FROM cases or more. Anything else is EngineChoice."""
    name = engine if engine is not None else os.environ.get("COVKB_ENGINE", "auto")
    if name not in ENGINES:
        said = f"COVKB_ENGINE={name!r}" if engine is None else f"the engine {name!r}"
        raise EngineChoice(f"{said} names no engine; use one of {', '.join(ENGINES)} "
                           "(auto, the default: compiled for big batches, clingo for a few cases)")
    return name


@dataclass(frozen=True)
class Choice:
    """Which engine decides `count` cases at a time, why, and the compiler's refusal of kb/."""

    engine: str  # "compiled" or "clingo"
    why: str
    refused: Optional[str] = None


def choose(count: int, directory: Optional[Path] = None, engine: Optional[str] = None) -> Choice:
    """Build the compiled engine now (before batch workers fork) when deciding `count`
    cases at a time will use it; which engine decides and why."""
    name = engine_name(engine)
    if name == "clingo":
        return Choice("clingo", "clingo decides (COVKB_ENGINE=clingo)" if engine is None else "clingo decides (the engine asked for)")
    if name != "compiled" and count < COMPILED_FROM:
        return Choice("clingo", f"clingo decides: {count} case(s) at a time, fewer than the {COMPILED_FROM} "
                      "from which the compiled engine pays for compiling kb/")
    from covkb.engine import compiled  # seconds to build: loaded only when it may decide

    where = directory or kb_dir()
    if compiled.compiled(where) is None:
        refused = compiled.refusal(where)
        return Choice("clingo", f"clingo decides: the compiled engine refuses kb/ ({refused})", refused)
    return Choice("compiled", "the compiled engine decides (kb/ ground once); clingo decides any case "
                  "beyond its slots for prior lines, names and dates")


def prepare(count: int, directory: Optional[Path] = None, engine: Optional[str] = None) -> str:
    """choose(), said in a sentence."""
    return choose(count, directory, engine).why


def solve(cases: Iterable[tuple[int, Case, Optional[str]]], directory: Optional[Path] = None,
          engine: Optional[str] = None) -> tuple[Policy, dict[int, Shown]]:
    """Decide every (key, case, requested version): compiled when the engine allows and
    kb/ compiles exactly, else by clingo in one grounding."""
    name = engine_name(engine)
    cases = list(cases)
    decided = None
    if name != "clingo" and (name == "compiled" or len(cases) >= COMPILED_FROM):
        from covkb.engine import compiled

        where = directory or kb_dir()
        built = compiled.compiled(where)
        if built is not None:
            decided = (reference.policy(where),
                       built.solve(cases, lambda rest: reference.solve(rest, where)[1]))
    decided = decided or reference.solve(cases, directory)
    for key, _, version in cases:
        decided[1][key].requested = version
    return decided
