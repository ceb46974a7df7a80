"""Mutation check of the knowledge base: would the tests notice a wrong rule?

Applies systematic small mutations to kb/ — each integer ±1, each comparison flipped
between strict and non-strict, each statement removed in turn — runs the test suite
against each mutant (COVKB_KB points covkb at the mutated copy) and reports killed/total
with every survivor listed, and explained where it is equivalent.

    python tools/mutants.py [--jobs 2] [--only FILE ...] [--match TEXT ...] [--limit N]
                            [--resume LOG ...] [--new-since REV | --held-since REV]
                            [--sample N]

--resume takes the output of an earlier run on the same kb/ and does not run again the
mutants it shows killed (their line is printed again, marked as resumed).
--new-since REV runs only the mutants of statements kb/ at git revision REV did not hold
(in any file, white space aside): after a change to kb/, the statements it wrote.
--held-since REV runs only the others: the statements the change kept, now in a changed kb/.
--sample N runs N of the mutants chosen, drawn with a fixed seed (a check, not the whole).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"
# The example tests that read kb/ first (fast; -x stops at the first failure), then the
# slower ones: diff, properties, the reviewer's view (remedies, documentation words) and
# FHIR (the Questionnaire is built from the fields each criterion reads). The
# decision-log tests do not read kb/.
STAGES = [
    ["tests/test_every_status.py", "tests/test_thresholds.py", "tests/test_versions.py",
     "tests/test_decision.py", "tests/test_names.py", "tests/test_explanations.py",
     "tests/test_explain.py", "tests/test_cli.py", "tests/test_input.py"],
    ["tests/test_chart_names.py", "tests/test_remedies.py", "tests/test_hints.py", "tests/test_pathway_reasons.py",
     "tests/test_small_truths.py", "tests/test_reviewer_view_second_pass.py"],
    ["tests/test_diff.py", "tests/test_properties.py", "tests/test_chart_name_properties.py",
     "tests/test_reviewer_view.py", "tests/test_fhir.py", "tests/test_fhir_real.py", "tests/test_lint.py",
     "tests/test_whatif.py"],
]

# Mutants that cannot change any answer, with the reason.
EQUIVALENT = [
    (re.compile(r"^#defined "), None,
     "a #defined directive only silences a warning about an input that may be absent"),
    (re.compile(r"^version\(\"2025-11-01\", 20251101, 99991231\)"), r"99991231 -> 99991232",
     "no date of service lies after 9999-12-31, so an end one day later changes nothing"),
    (re.compile(r"^documented\(K,F\) :- date\(K,F,_\)\."), r"statement removed",
     "the only date field, member.birth_date, always settles criterion 1, the one criterion "
     "that reads it, so whether it counts as documented never shows"),
    (re.compile(r'^documented\(K,"compendium\.nccn_category"\)'), r"statement removed",
     "no criterion reads compendium.nccn_category, and documented/2 is read only for fields "
     "that criteria read"),
    (re.compile(r"^month_days\(Y,M,31\)"), r"31 -> 32$",
     "no day of the month exceeds 31, so a 31-day month never clamps, whether its bound is 31 or 32"),
    (re.compile(r"^window_start\(K,M,Y2\*10000 \+ M2\*100 \+ N\)"), r"> -> >=",
     "when the day equals the month's length both window_start rules give the same date"),
    (re.compile(r'^criterion\("[^"]+","specialist",1,'), r"1 -> 0$",
     "places in policy order are only compared: the first criterion stays first at 0"),
    (re.compile(r'^criterion\("2024-08-21","9",20,'), r"20 -> 21$",
     "places in policy order are only compared: the last criterion stays last at 21"),
    (re.compile(r'^criterion\("2025-11-01","dose",15,'), r"15 -> 16$",
     "places in policy order are only compared: the last criterion stays last at 16"),
    (re.compile(r"^contract\(K,primary\)"), r"statement removed",
     "contract/2 is read only for its words, and contract_words(primary, \"\") is empty: a reason "
     "reads the same with a primary contract as with none"),
    (re.compile(r'^contract_words\(primary, ""\)'), r"statement removed",
     "a contract without words reads as the empty text, which is what this fact says"),
    (re.compile(r"^relation\(lt,below\)"), r"statement removed",
     "no version states an lt bound (their bounds are gt, ge and le), so relation(lt,_) is never "
     "joined; it completes the four relations for the next bound that needs it"),
    (re.compile(r'^regimen\("(flucy|vmp|mpt)",'), r"statement removed",
     "the regimen is read from its parts as the same agents in every letter case (Flu + Cy, V + MP, "
     "MP + T: kb/names.lp's short codes and the listed MP; tests/test_names.py holds each); the entry "
     "states the published regimen itself"),
    (re.compile(r'^dara\("'), r"statement removed",
     "Dara is a short code for daratumumab, so the spelling is read from its parts (Dara and a listed "
     "regimen) as the same agents in every letter case (tests/test_names.py holds each)"),
    (re.compile(r'^regimen_spelling\(S, R\) :- dara\(S, R\)\.'), r"statement removed",
     "every dara/2 spelling is read from its parts (Dara and a listed regimen) as the same agents "
     "(tests/test_names.py holds each)"),
    (re.compile(r'^token\(T\) :- short_name\(T,_\)\.'), r"statement removed",
     "every short name is a short_code (short_code(C,G) :- short_name(C,G)), so a component, so "
     "a token by token(T) :- component(T,_)"),
    (re.compile(r'^product\("(ide|cilta)-cel", '), r"statement removed",
     "the name compacts to idecel or ciltacel, a product_code of the same product (names.lp), so it "
     "is read alike"),
    (re.compile(r"^several\(A,R\) :- reading_size\(_,A,R,N\), N >= 2\."), r"2 -> 1$",
     "covkb.engine.facts passes only readings of two tokens or more (Vocabulary.readings), so no "
     "reading_size is 1"),
    (re.compile(r'^because\(K,"5e",before\("significant_cardiac_disease_dates",D,S\)\)'), r"< -> <=",
     "a date equal to the window's start is recent (recent_cardiac_2024: D >= S), which the rule's "
     "body excludes, so D <= S admits no date D < S does not"),
    (re.compile(r'^met\(K,"3"\)'), r"2 -> 1$",
     "status/3 gives not_met precedence over met: one line is not_met whatever met says"),
    (re.compile(r'^drug_stem\("leucel"\)'), r"statement removed",
     "every word ending in -leucel also ends in -cel, itself a drug_stem, so a name the -leucel "
     "stem turns away is turned away without it (covkb.results.result.nearest)"),
    (re.compile(r'^drug_stem\("ciclib"\)'), r"statement removed",
     "no part of any known name is within two edits of 'ciclib' (the nearest, 'arcli' of sarclisa, "
     "is three), and two edits are the most typo_edits allows, so no name offered a known name "
     "has a word ending in it"),
    (re.compile(r'^drug_stem\("parib"\)'), r"statement removed",
     "the parts of known names within two edits of 'parib' ('arab' and 'darab' of fludarabine, "
     "'panob' of panobinostat) are two edits away and followed by no word boundary, and no known "
     "name ends within two edits of it: a word ending in -parib is three edits or more from every "
     "known name, more than typo_edits allows"),
]


@dataclass
class Mutant:
    file: str
    line: int
    kind: str
    before: str
    after: str
    also_in: str = ""  # another kb file that declares the very same statement

    def describe(self) -> str:
        return f"{self.file}:{self.line} {self.kind}: {self.before.strip()[:90]!r}"


def statements(text: str):
    """(start, end, line) of each statement outside strings and comments."""
    index, start, in_string, depth = 0, None, False, 0
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 2
                continue
            if char == '"':
                in_string = False
        elif char == "%":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif char == '"':
            in_string = True
            start = index if start is None else start
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "." and depth == 0 and start is not None and text[index + 1:index + 2] != ".":
            if index > 0 and text[index - 1] == ".":
                pass
            else:
                yield start, index + 1, text.count("\n", 0, start) + 1
                start = None
        elif not char.isspace() and start is None:
            start = index
        index += 1


CODE = re.compile(r'"(?:[^"\\]|\\.)*"|(?P<int>(?<![\w])\d+(?![\w]))|(?P<cmp><=|>=|<|>)')
FLIP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


def mutants(only: list[str] | None = None):
    texts = {path.name: path.read_text() for path in sorted(KB.glob("*.lp"))}
    declared = {name: {text[a:b] for a, b, _ in statements(text)} for name, text in texts.items()}
    for name, text in texts.items():
        if only and name not in only:
            continue
        path = KB / name
        for start, end, line in statements(text):
            statement = text[start:end]
            twin = next((other for other, found in declared.items()
                         if other != name and statement in found and ":-" not in statement), "")
            yield Mutant(path.name, line, "statement removed", statement,
                         text[:start] + text[end:], twin)
            for match in CODE.finditer(statement):
                at = start + match.start()
                if match.group("int"):
                    value = int(match.group("int"))
                    for delta in (1, -1):
                        yield Mutant(path.name, line, f"{value} -> {value + delta}", statement,
                                     text[:at] + str(value + delta) + text[at + len(match.group()):], twin)
                elif match.group("cmp"):
                    op = match.group("cmp")
                    yield Mutant(path.name, line, f"{op} -> {FLIP[op]}", statement,
                                 text[:at] + FLIP[op] + text[at + len(op):])


def _plain(statement: str) -> str:
    return " ".join(statement.split())


def statements_at(revision: str) -> set[str]:
    """Every statement of kb/ at a git revision, white space aside."""
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:kb/"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    found: set[str] = set()
    for name in names:
        if name.endswith(".lp"):
            text = subprocess.run(["git", "show", f"{revision}:kb/{name}"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            found.update(_plain(text[a:b]) for a, b, _ in statements(text))
    return found


def equivalent(mutant: Mutant) -> str | None:
    if mutant.also_in and mutant.kind == "statement removed":
        return f"{mutant.also_in} declares the same fact, so removing one copy leaves the set of facts as it was"
    for pattern, kind, reason in EQUIVALENT:
        if pattern.search(mutant.before.strip()) and (kind is None or re.match(kind, mutant.kind)):
            return reason
    return None


class Killers:
    """The tests that killed earlier mutants, most recent first. A new mutant meets them
    before the whole of STAGES: neighbouring statements tend to fall to the same test, and
    a pytest run of a few tests takes seconds where STAGES take minutes. A killer's failure
    counts only when that test, run alone, passes on the unmutated kb/ and fails on the
    mutant (a test that leans on another one run before it would otherwise kill every
    mutant); a mutant the killers do not kill runs every stage, so the verdict is what
    STAGES alone would give."""

    def __init__(self, python: str, keep: int = 40):
        self.python, self.keep, self.tests, self.lock = python, keep, [], threading.Lock()
        self.alone: dict[str, bool] = {}  # test → passes alone on the unmutated kb/

    def first(self) -> list[str]:
        with self.lock:
            return list(self.tests)

    @staticmethod
    def function(test: str) -> str:
        """The whole test function of a test id: its other parameters are the likely next killers."""
        return test.split("[", 1)[0]

    def add(self, test: str) -> None:
        test = self.function(test)
        with self.lock:
            if test in self.tests:
                self.tests.remove(test)
            self.tests = [test, *self.tests][: self.keep]

    def drop(self, test: str) -> None:
        test = self.function(test)
        with self.lock:
            if test in self.tests:
                self.tests.remove(test)

    def passes_alone(self, test: str) -> bool:
        with self.lock:
            known = self.alone.get(test)
        if known is None:
            env = {**ENVIRONMENT, "COVKB_KB": str(KB), "HYPOTHESIS_PROFILE": "dev"}
            run = subprocess.run([self.python, "-m", "pytest", "-q", *PYTEST, test], cwd=ROOT,
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            known = run.returncode == 0
            with self.lock:
                self.alone[test] = known
        return known


# One Hypothesis seed for every run, so that a property draws the same examples for the
# unmutated kb/ and for each mutant; a property whose filter rejects too much under a
# mutant (a health check) says nothing about the mutant when run alone.
PYTEST = ["-p", "no:cacheprovider", "--hypothesis-seed=2024041", "-n0"]  # mutants run side by side (--jobs) instead
# Each mutant starts pytest a few times: with the compiled modules and rewritten tests kept
# on disk (PYTHONDONTWRITEBYTECODE unset) a start takes 0.6 s where it took 1.6.
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
NO_VERDICT = re.compile(r"FailedHealthCheck|Unsatisfiable")
# A stage that runs this long is stopped (the unmutated suite runs each in about a minute).
STAGE_SECONDS = 1200
FAILED = re.compile(r"^FAILED (.+?)(?: - .*)?$", re.M)
RESUMED = re.compile(r"^  \[(?:\d+/\d+|resumed)\] killed by (?P<test>.+?)  (?P<what>[\w.-]+\.lp:\d+ .+)$")


def killed(mutant: Mutant, python: str, killers: Killers) -> tuple[bool, str]:
    """Whether the tests notice the mutant, and the test that did."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "kb"
        shutil.copytree(KB, directory)
        (directory / mutant.file).write_text(mutant.after)
        env = {**ENVIRONMENT, "COVKB_KB": str(directory), "HYPOTHESIS_PROFILE": "dev"}
        first = killers.first()
        for stage in ([first] if first else []) + STAGES:
            try:
                run = subprocess.run([python, "-m", "pytest", "-x", "-q", "-rf", *PYTEST, *stage],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, timeout=STAGE_SECONDS)
            except subprocess.TimeoutExpired:  # no verdict: listed with the survivors, to look at
                print(f"  timed out after {STAGE_SECONDS} s: {mutant.describe()}", flush=True)
                return False, "timed out"
            found = FAILED.search(run.stdout)
            test = found.group(1) if found else f"exit {run.returncode}"
            if stage is first:
                # 1: a test failed; 2: a test module could not be collected. 4 or 5 (a test
                # id pytest cannot find) is no verdict, nor is a test that fails alone anyway.
                if run.returncode not in (1, 2):
                    continue
                if found and run.stdout.startswith("F") and killers.passes_alone(test):
                    # the first test run failed: no test ran before it to lean on, so it
                    # fails as it would alone
                    return True, test
                if found and killers.passes_alone(test):
                    # and fails alone on this mutant: then it is the mutant that it notices
                    alone = subprocess.run([python, "-m", "pytest", "-q", *PYTEST, test], cwd=ROOT, env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    if alone.returncode in (1, 2) and not NO_VERDICT.search(alone.stdout):
                        return True, test
                if found:
                    killers.drop(test)
                continue
            if run.returncode != 0:
                if found:
                    killers.add(test)
                return True, test
    return False, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", action="append",
                        help="mutate only this kb file (e.g. v2024-08-21.lp; repeatable)")
    parser.add_argument("--limit", type=int, help="stop after this many mutants")
    parser.add_argument("--resume", action="append", type=Path, default=[],
                        help="an earlier run's output: the mutants it shows killed are not run again")
    parser.add_argument("--new-since", metavar="REV",
                        help="run only the mutants of statements kb/ at this git revision did not hold")
    parser.add_argument("--held-since", metavar="REV",
                        help="run only the mutants of statements kb/ at this git revision held too")
    parser.add_argument("--sample", type=int, help="run this many of the mutants chosen, drawn with seed 2024041")
    parser.add_argument("--match", action="append",
                        help="run only the mutants whose description holds this text (repeatable)")
    options = parser.parse_args()
    every = [m for m in mutants(options.only)
             if not options.match or any(text in m.describe() for text in options.match)]
    if options.new_since:
        old = statements_at(options.new_since)
        every = [m for m in every if _plain(m.before) not in old]
    if options.held_since:
        old = statements_at(options.held_since)
        every = [m for m in every if _plain(m.before) in old]
    if options.sample is not None:
        import random

        chosen = [m for m in every if not equivalent(m)]
        every = sorted(random.Random(2024041).sample(chosen, min(options.sample, len(chosen))),
                       key=lambda m: (m.file, m.line))
    every = every[: options.limit]
    # Mutants known to be equivalent are listed, not run: they cannot change an answer.
    skipped = [(m, equivalent(m)) for m in every if equivalent(m)]
    earlier: dict[str, str] = {}
    for log in options.resume:
        for line in log.read_text().splitlines():
            found = RESUMED.match(line)
            if found:
                earlier[found["what"]] = found["test"]
    todo = [m for m in every if not equivalent(m)]
    resumed = [(m, earlier[m.describe()]) for m in todo if m.describe() in earlier]
    todo = [m for m in todo if m.describe() not in earlier]
    started = time.perf_counter()
    print(f"{len(every)} mutants of kb/: {len(skipped)} equivalent by construction, "
          f"{len(resumed)} killed in an earlier run, {len(todo)} to run, {options.jobs} at a time", flush=True)
    for mutant, test in resumed:
        print(f"  [resumed] killed by {test}  {mutant.describe()}", flush=True)
    done = 0
    killers = Killers(sys.executable)

    def attempt(mutant: Mutant) -> bool:
        nonlocal done
        dead, test = killed(mutant, sys.executable, killers)
        done += 1
        print(f"  [{done}/{len(todo)}] {f'killed by {test}' if dead else 'SURVIVED'}  {mutant.describe()}",
              flush=True)
        return dead

    with ThreadPoolExecutor(options.jobs) as pool:
        outcomes = list(pool.map(attempt, todo))
    survivors = [m for m, dead in zip(todo, outcomes) if not dead]
    total, dead = len(todo) + len(resumed), sum(outcomes) + len(resumed)
    print(f"killed {dead}/{total} ({100 * dead / max(total, 1):.1f}%) of the mutants run, "
          f"in {time.perf_counter() - started:.0f} s")
    for mutant in survivors:
        print(f"  survived  {mutant.describe()}")
    print(f"equivalent by construction, not run ({len(skipped)}):")
    for mutant, reason in skipped:
        print(f"  {mutant.describe()}: {reason}")
    print(f"survivors: {len(survivors)} (each needs a test or an explanation)")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
