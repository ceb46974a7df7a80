"""The vocabulary the knowledge base shows, and the one reader of it.

Every shown atom clingo's model or the compiled engine gives back is read here, and only
here: a case's atoms (the case key first) into its Shown, the policy's own atoms into
Policy. A shown atom of a name or arity this vocabulary does not declare is refused, so a
new `#show` in kb/ is read only once it is declared below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class Shown:
    """What the knowledge base shows about one case."""

    version: Optional[str] = None
    decision: Optional[str] = None
    label: Optional[str] = None
    rule: Optional[str] = None
    contract: Optional[str] = None
    asserted: list[str] = field(default_factory=list)  # the compendium pathway's assertions
    status: dict[str, str] = field(default_factory=dict)
    # reason terms as (clingo's text, parsed term); the text orders them
    because: dict[str, list[tuple[str, tuple]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    requested: Optional[str] = None  # the version forced with --policy-version
    document: dict[str, list[str]] = field(default_factory=dict)
    advisories: list[tuple[str, tuple]] = field(default_factory=list)
    # a not-met criterion's remedy kind, and for one met with time what its date is from
    remedy: dict[str, str] = field(default_factory=dict)
    on_date: dict[str, list[tuple]] = field(default_factory=dict)
    fails: dict[str, set[str]] = field(default_factory=dict)
    # fields still open once a criterion's remedy is applied
    remedy_open: dict[str, list[str]] = field(default_factory=dict)
    # the rule whose words give the reason (kb/core.lp: the decided rule's, or other words)
    reason_rule: Optional[str] = None
    # unknown criteria whose settling could change the decision, and the names they name
    can_change: set[str] = field(default_factory=set)
    decisive_names: set[str] = field(default_factory=set)
    for_resubmission: set[str] = field(default_factory=set)  # fields that cannot change it
    all_of: set[str] = field(default_factory=set)  # one_of groups needing every field
    unasserted: list[str] = field(default_factory=list)  # NCCN categories that are no pathway
    in_force: Optional[str] = None  # the version in force on the date of service (kb in_force/2)


@dataclass
class Policy:
    """The policy as the knowledge base states it: its id, versions and criteria."""

    id: str = ""
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    criteria: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # words for explanations: decision rules, contracts, labels, remedies
    words: dict[tuple[str, str], str] = field(default_factory=dict)
    remedies: dict[tuple[str, str], str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    # version -> criterion -> the case fields it reads (kb reads/3)
    reads: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    kb_sha256: str = ""
    directory: Optional[Path] = field(default=None, repr=False, compare=False)  # kb/ it was read from
    # the explanation vocabulary of kb/words.lp: predicate name → its atoms' arguments
    facts: dict[str, list[tuple]] = field(default_factory=dict)
    # tables the result writer derives from the above, built once (covkb.results.result.tables)
    derived: dict = field(default_factory=dict, repr=False, compare=False)


class Undeclared(RuntimeError):
    """kb/ shows an atom this vocabulary does not declare (its name, or its arity)."""


# The policy's own atoms (no case key), each name with its arity. Read into Policy:
# the five below by read(); WORD_TABLES as words[name, constant] = text; the rest are
# the explanation vocabulary, kept as rows in Policy.facts.
POLICY_ATOMS = {"criterion": 4, "version": 3, "policy": 1, "remedy": 3, "known": 1, "reads": 3}
WORD_TABLES = {"rule_words": 2, "contract_words": 2, "asserted_words": 2, "on_date_event": 2}
EXPLANATION_WORDS = {
    # kb/words.lp: fields, units, groups, remedies, correspondences between versions
    "field_words": 2, "field_unit": 2, "one_of": 2, "remedy_words": 2, "correspond": 4,
    # kb/request.lp: the product a request asks for, the form's words
    "requested_code": 2, "requested_product": 1, "question_words": 2, "choice_words": 3, "payer_field": 1,
    "typo_edits": 2, "drug_stem": 1, "hint_words": 1, "treatment": 3, "group_words": 3,
    "unasserted_words": 1,
    # kb/words.lp: criterion readings, counts in words, how reasons cite requirements
    "reading": 3, "count_words": 3, "cite_words": 2,
    # kb/words.lp: the sentences and phrases every result is written in
    "sentence": 3, "phrase": 2, "field_basis": 2, "unit_joined": 1}
def _status(one: Shown, rest: str, args: tuple) -> None:
    one.status[args[0]] = args[1][0]


def _because(one: Shown, rest: str, args: tuple) -> None:
    one.because.setdefault(args[0], []).append((rest, args[1]))


def _decision(one: Shown, rest: str, args: tuple) -> None:
    one.decision, one.label = args[0][0], args[1][0]


def _applies(one: Shown, rest: str, args: tuple) -> None:
    one.version = args[0]


def _document(one: Shown, rest: str, args: tuple) -> None:
    one.document.setdefault(args[0], []).append(args[1])


def _decided(one: Shown, rest: str, args: tuple) -> None:
    one.rule = args[0][0]


def _contract(one: Shown, rest: str, args: tuple) -> None:
    one.contract = args[0][0]


def _asserted(one: Shown, rest: str, args: tuple) -> None:
    one.asserted.append(args[0][0])


def _missing(one: Shown, rest: str, args: tuple) -> None:
    one.missing.append(args[0])


def _advisory(one: Shown, rest: str, args: tuple) -> None:
    one.advisories.append((rest, args[0]))


def _remedy_kind(one: Shown, rest: str, args: tuple) -> None:
    one.remedy[args[0]] = args[1][0]


def _on_date(one: Shown, rest: str, args: tuple) -> None:
    one.on_date.setdefault(args[0], []).append(args[1])


def _reason_rule(one: Shown, rest: str, args: tuple) -> None:
    one.reason_rule = args[0][0]


def _can_change(one: Shown, rest: str, args: tuple) -> None:
    one.can_change.add(args[0])


def _decisive_name(one: Shown, rest: str, args: tuple) -> None:
    one.decisive_names.add(args[0])


def _for_resubmission(one: Shown, rest: str, args: tuple) -> None:
    one.for_resubmission.add(args[0])


def _all_of(one: Shown, rest: str, args: tuple) -> None:
    one.all_of.add(args[0][0])


def _unasserted(one: Shown, rest: str, args: tuple) -> None:
    one.unasserted.append(args[0])


def _remedy_open(one: Shown, rest: str, args: tuple) -> None:
    one.remedy_open.setdefault(args[0], []).append(args[1])


def _in_force(one: Shown, rest: str, args: tuple) -> None:
    one.in_force = args[0]


def _failed_by(one: Shown, rest: str, args: tuple) -> None:
    one.fails.setdefault(args[0], set()).add(args[1])


# A case's atoms: name → (arity, the case key counted; what the atom sets in that case's
# Shown, called with the Shown, clingo's text of the arguments after the key and the parsed
# arguments). A keyed atom of another name or arity is refused.
CASE_ATOMS = {
    "status": (3, _status), "because": (3, _because), "decision": (3, _decision),
    "applies": (2, _applies), "document": (3, _document), "decided": (2, _decided),
    "contract": (2, _contract), "asserted": (2, _asserted), "missing": (2, _missing),
    "advisory": (2, _advisory), "remedy_kind": (3, _remedy_kind), "on_date": (3, _on_date),
    "reason_rule": (2, _reason_rule), "can_change": (2, _can_change), "decisive_name": (2, _decisive_name),
    "for_resubmission": (2, _for_resubmission), "all_of": (2, _all_of), "unasserted": (2, _unasserted),
    "remedy_open": (3, _remedy_open), "failed_by": (3, _failed_by), "in_force": (2, _in_force),
}
KEYED = {name: act for name, (_, act) in CASE_ATOMS.items()}
ARITY = {name: arity for name, (arity, _) in CASE_ATOMS.items()}

# kb/'s own atoms that no result shows and the analysis commands read (covkb diff's and
# whatif's case classes, lint's, the kb self-check's), name → arity; read by
# covkb.engine.reference.internals, and only those.
INTERNAL = {
    "threshold": 2, "months_back": 1, "plausible": 5, "drug_class": 2, "name": 2, "product": 2,
    "bound": 5, "remedy_class": 3, "timed": 3, "failure_named": 2, "no_counterpart": 3}

# Everything kb/ may show: name → arity. kbcheck holds kb/'s #show directives against it.
SHOWN = {**POLICY_ATOMS, **WORD_TABLES, **EXPLANATION_WORDS, **ARITY}


def declared(name: str, arity: int) -> None:
    """Undeclared unless name/arity is in the vocabulary."""
    if SHOWN.get(name) != arity:
        raise Undeclared(f"kb/ shows {name}/{arity}, which the shown vocabulary "
                         f"(covkb.engine.vocabulary) does not declare")


def read(atoms, shown: dict[int, Shown], policy: Policy) -> None:
    criteria: dict[str, list[tuple[int, str, str]]] = {}
    keyed, arities = KEYED, ARITY
    for name, key, (rest, args) in atoms:
        if key is None:
            declared(name, len(args))
            if name == "criterion":
                criteria.setdefault(args[0], []).append((args[2], args[1], args[3]))
            elif name == "version":
                policy.versions[args[0]] = (args[1], args[2])
            elif name == "policy":
                policy.id = args[0]
            elif name == "remedy":
                policy.remedies[args[0], args[1]] = args[2]
            elif name == "known":
                policy.names.add(args[0])
            elif name == "reads":
                policy.reads.setdefault(args[0], {}).setdefault(args[1], []).append(args[2])
            elif name in WORD_TABLES:
                policy.words[name, args[0][0]] = args[1]
            else:
                policy.facts.setdefault(name, []).append(args)
            continue
        act = keyed.get(name)
        if act is None or arities[name] != len(args) + 1:
            declared(name, len(args) + 1)
        act(shown[key], rest, args)
    for version, rows in criteria.items():
        orders = [order for order, _, _ in rows]
        if len(set(orders)) != len(orders):
            raise RuntimeError(f"kb/: two criteria of version {version} share a place in policy order")
        policy.criteria[version] = [(ident, text) for _, ident, text in sorted(rows)]
