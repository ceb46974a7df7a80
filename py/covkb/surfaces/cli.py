"""covkb's command line: decide prior-authorization requests for idecabtagene
vicleucel (Abecma) against coverage policy 2024041."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer

from covkb.surfaces import command
from covkb.surfaces.command import POLICY_VERSION, fail as _fail, known_version as _known_version, \
    open_log as _open_log, say_engine as _say_engine, stop as _stop


def _load(case: Path):
    return command.read_case(case)[0]


HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help=__doc__ + "\n\nA case is a JSON object (or YAML, or .lp facts); see `covkb schema`. "
    "Decisions: covered, not_covered, pending (documentation needed), not_applicable.",
    # rich help keeps a blank-line-separated paragraph on a line of its own
    epilog="Examples:\n\n"
           "  covkb check facts/covered-2025.json\n\n"
           "  covkb explain CASE -f markdown\n\n"
           "  covkb check CASE --policy-version 2024-08-21\n\n"
           "  covkb batch CASES --out results.jsonl --log audit.db\n\n"
           "  covkb diff",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP,
)


def _print_version(value: bool) -> None:
    if not value:
        return
    from covkb import __version__
    from covkb.engine.kb import kb_dir, kb_sha256

    typer.echo(f"covkb {__version__}\nkb {kb_dir()} sha256 {kb_sha256()}")
    raise typer.Exit()


@app.callback()
def _program(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print covkb's version and the digest of its knowledge base, then exit."),
) -> None:
    pass


class Format(str, enum.Enum):
    text = "text"
    json = "json"


LOG_HELP = ("Record each determination in this SQLite decision log (see `covkb audit`). "
            "Also taken from $COVKB_LOG.")
CASE_ARGUMENT = typer.Argument(..., metavar="CASE", help="The case: a .json, .yaml/.yml or .lp file, "
                                                         "a FHIR R4 Bundle or QuestionnaireResponse (JSON), "
                                                         "or - for JSON on standard input.", allow_dash=True)
VERSION_HELP = ("Apply this policy version (e.g. 2024-08-21) instead of the one in force "
                "on the date of service; `covkb versions` lists them.")


class CheckFormat(str, enum.Enum):
    text = "text"
    json = "json"
    pas = "pas"
    crd = "crd"


VERBOSE_HELP = ("Say on standard error which engine decides: the compiled engine (kb/ ground once) "
                "or clingo, and why clingo (COVKB_ENGINE=clingo, too few cases, or a kb/ it refuses).")


@app.command()
def check(
    case: Path = CASE_ARGUMENT,
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help=VERSION_HELP),
    format: CheckFormat = typer.Option(CheckFormat.text, "--format", "-f",
                                       help="text: decision, a table of criteria, advisories and missing "
                                            "documentation; json: the result object of the contract; "
                                            "pas: a Da Vinci PAS response Bundle (the ClaimResponse and the request's "
                                            "resources it references); crd: the CRD "
                                            "coverage-information extension (FHIR R4 JSON)."),
    log: Optional[Path] = typer.Option(None, "--log", envvar="COVKB_LOG", help=LOG_HELP),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    every: bool = typer.Option(False, "--all", "-a", help="Show every criterion, met ones too "
                                                          "(by default only those not met or unknown)."),
) -> None:
    """Decide one request: the decision, its reason, and the criteria not met or unknown.

    CASE is a case file (JSON, YAML, .lp) or a FHIR R4 Bundle or QuestionnaireResponse
    (PAS/DTR), read into the same case.

    Exit 0 when decided; 2 when the case is invalid (the message names the field).
    """
    command.check(case, version, format.value, log, verbose, every)


OUT_HELP = ("Replaced whole when the run ends, never half-written; a symbolic link is written through to "
            "the file it names, a dangling one refused.")


@app.command()
def batch(
    cases_file: Path = typer.Argument(..., metavar="CASES",
                                      help="One JSON case per line (- for standard input). Blank lines are skipped.",
                                      allow_dash=True),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write result lines here instead of standard output. " + OUT_HELP),
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help=VERSION_HELP),
    chunk: int = typer.Option(0, "--chunk", min=0, max=100_000,
                              help="Lines per chunk, decided together: 0 (the default) is 2000 when the compiled "
                                   "engine decides and 500 under clingo, which grounds a chunk in one program."),
    workers: int = typer.Option(0, "--workers", "-w", min=0,
                                help="Worker processes deciding chunks side by side; 0 means one per core."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress and no summary line on standard error."),
    log: Optional[Path] = typer.Option(None, "--log", envvar="COVKB_LOG", help=LOG_HELP),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Decide many requests: one JSON result line per case line, in input order.

    A line that is not a valid case gives {"case_id": ..., "line": N, "error": ...}
    and the rest are still decided. Blank lines are skipped. Progress shows on a
    terminal; a summary line ends the run on standard error. Exit 0 when every line
    was decided, 1 when any line was invalid.
    """
    import os

    from covkb.surfaces.batch import CouldNotFinish, output, run
    from covkb.input.case import InvalidCase

    version = _known_version(version)
    try:
        source = sys.stdin.buffer if str(cases_file) == "-" else cases_file.open("rb")
    except OSError as error:
        raise _fail(f"{cases_file}: {error.strerror}") from None
    chunk = chunk or None  # 0: batch's default for the engine that decides
    _say_engine(verbose, chunk)
    connection = _open_log(log) if log else None
    try:
        with output(out, [cases_file, *([log] if log else [])]) as sink:
            summary = run(source, sink, version=version, chunk=chunk,
                          workers=workers or os.cpu_count() or 1,
                          progress=not quiet and sys.stderr.isatty(), log=connection)
    except InvalidCase as error:
        raise _fail(error.message) from None
    except CouldNotFinish as error:
        raise _stop(f"batch {cases_file}: {error}") from None
    except KeyboardInterrupt:
        raise _stop(f"batch {cases_file}: interrupted") from None
    finally:
        if connection is not None:
            connection.close()
        if source is not sys.stdin.buffer:
            source.close()
    if not quiet:
        typer.echo(summary.line(), err=True)
    if summary.invalid:
        raise typer.Exit(1)


class ExplainFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


@app.command()
def explain(
    case: Path = CASE_ARGUMENT,
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help=VERSION_HELP),
    format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f",
                                         help="text for a terminal, json for a program, markdown for an audit report, "
                                              "html for one self-contained printable page."),
) -> None:
    """Explain a decision for an auditor: the rule that made it, and for every criterion
    the policy's words, the facts and comparisons behind its status, what to document
    when unknown, and whether a criterion not met can be remedied."""
    from covkb.api import explain as explain_case
    from covkb.results.explain import as_markdown, as_text
    from covkb.surfaces.terminal import printable
    from covkb.results.render import as_json

    version = _known_version(version)
    one = _load(case)
    explanation = explain_case(one, version)
    if format is ExplainFormat.json:
        typer.echo(as_json(explanation))
    elif format is ExplainFormat.markdown:
        typer.echo(printable(as_markdown(explanation)))
    elif format is ExplainFormat.html:
        from covkb.surfaces.report import Provenance, determination_page

        provenance = Provenance.current(explanation)
        provenance.date_of_service = one.date_of_service.isoformat()
        typer.echo(determination_page(explanation, provenance), nl=False)
    else:
        typer.echo(printable(as_text(explanation)))


@app.command()
def compare(
    case: Path = CASE_ARGUMENT,
    format: Format = typer.Option(Format.text, "--format", "-f",
                                  help="text: criteria side by side, differing rows marked; json: both explanations."),
) -> None:
    """Decide one case under every policy version, side by side, after what its date of
    service decides: a version the date does not select is a what-if."""
    from covkb.api import compare_by_date
    from covkb.results.explain import compare_text, comparison
    from covkb.surfaces.terminal import printable
    from covkb.results.render import as_json

    one = _load(case)
    sides, by_date, in_force = compare_by_date(one)
    if format is Format.json:
        typer.echo(as_json(comparison(one.case_id, sides)))
    else:
        typer.echo(printable(compare_text(one.case_id, sides, by_date, in_force)))


@app.command("diff")
def diff_versions(
    from_version: Optional[str] = typer.Option(None, "--from", help="The earlier version (default: the oldest)."),
    to_version: Optional[str] = typer.Option(None, "--to", help="The later version (default: the newest)."),
    format: Format = typer.Option(Format.text, "--format", "-f",
                                  help="text: the kinds of case; json: with the eligible baseline and one example case per kind."),
) -> None:
    """Every kind of case two versions decide differently, computed by clingo over an
    abstract case space (each field reduced to the classes its thresholds make, plus
    "not documented"), as the smallest sets of departures from an eligible case; then
    the kinds decided alike on different failing criteria."""
    from covkb.api import versions as known
    from covkb.analysis.diff import as_text as diff_text, diff
    from covkb.results.render import as_json

    ordered = sorted(known())
    pair = [_known_version(from_version, "--from") or ordered[0], _known_version(to_version, "--to") or ordered[-1]]
    if pair[0] == pair[1]:
        raise _fail("--from and --to name the same version")
    result = diff(pair)
    typer.echo(as_json(result) if format is Format.json else diff_text(result))


class LintFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


@app.command()
def lint(
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help="The version to lint (default: the newest)."),
    format: LintFormat = typer.Option(LintFormat.text, "--format", "-f",
                                      help="text: the findings; json: with each witness case; "
                                           "markdown: a table per kind, for the policy team."),
) -> None:
    """What a policy author should see before publishing a version, each finding proved by
    clingo over the whole case space `covkb diff` searches: criteria implied by others (so
    never the only reason for a denial), criteria that can never be the deciding one or never
    be met, quoted words that join with OR what the rules conjoin, and a bound stated
    differently in the criteria and the guidelines. A witness case is given where one exists,
    re-decided by `covkb check`'s path. Exit 0 with or without findings."""
    from covkb.analysis.lint import as_markdown, as_text as lint_text, lint as run_lint
    from covkb.results.render import as_json

    result = run_lint(_known_version(version, POLICY_VERSION))
    typer.echo(as_json(result) if format is LintFormat.json
               else as_markdown(result) if format is LintFormat.markdown else lint_text(result))


class Allow(str, enum.Enum):
    clinical = "clinical"


@app.command()
def whatif(
    case: Path = CASE_ARGUMENT,
    allow: list[Allow] = typer.Option([], "--allow",
                                      help="Also change fields of this remedy kind: clinical (a new documented "
                                           "clinical status). Without it only what the request itself can change "
                                           "(remedy kind request: dose, center, specialist, concurrent therapies) "
                                           "and documentation of what is undocumented; history never changes."),
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help=VERSION_HELP),
    limit: int = typer.Option(10, "--limit", min=1, help="List at most this many alternatives of the smallest size."),
    format: Format = typer.Option(Format.text, "--format", "-f",
                                  help="text: each alternative, its decision and a sentence for a provider letter; "
                                       "json: the same with each alternative's case."),
) -> None:
    """The smallest changes that make the request covered, found by clingo over the request
    and the classes the knowledge base's thresholds make. Numbers move to the nearest value
    of a class, exactly (a dose of 600 becomes 510); every alternative of the smallest size
    is re-decided as `covkb check` decides it. A criterion met from a date is reported with
    its date; for a pending request, which documented values meet or fail each unknown
    criterion."""
    from covkb.results.render import as_json
    from covkb.surfaces.terminal import printable
    from covkb.analysis.whatif import as_text as whatif_text, whatif as run_whatif

    answer = run_whatif(_load(case), Allow.clinical in allow, _known_version(version), limit)
    typer.echo(as_json(answer) if format is Format.json else printable(whatif_text(answer)))


@app.command()
def versions() -> None:
    """List the policy versions with the dates they are in force."""
    from covkb.api import versions as known

    for name, (start, end) in sorted(known().items()):
        until = "onward" if end >= 99991231 else f"to {_iso(end)}"
        typer.echo(f"{name}  in force from {_iso(start)} {until}")


def _iso(number: int) -> str:
    return f"{number // 10000:04d}-{number // 100 % 100:02d}-{number % 100:02d}"


@app.command()
def criteria(
    version: Optional[str] = typer.Option(None, POLICY_VERSION, help="Only this version."),
) -> None:
    """Print every criterion id of each version with the policy's words, quoted verbatim,
    and under a criterion whose words covkb reads in a frame (criterion 5's items, the
    opening sentence read into 2) that reading, unquoted."""
    from covkb.engine import reference

    version = _known_version(version)
    policy = reference.policy()
    for name in sorted(policy.criteria):
        if version and name != version:
            continue
        readings = {(v, i): w for v, i, w in policy.facts.get("reading", ())}
        typer.echo(f"policy {policy.id}, version {name}")
        for ident, text in policy.criteria[name]:
            typer.echo(f'  {ident:<11}"{text}"')
            if (name, ident) in readings:
                typer.echo(f"  {'':<11}reading: {readings[name, ident]}")


@app.command()
def questionnaire(
    version: Optional[str] = typer.Option(None, "--policy-version",
                                          help="The policy version to ask for (default: the newest)."),
) -> None:
    """Print the FHIR R4 Questionnaire (DTR) asking for every case field: one group per
    criterion with the policy's words, each field an item whose linkId is its path.
    `covkb check` reads a QuestionnaireResponse to it, alone or in a Bundle."""
    from covkb.fhir import codes as fhir_codes
    from covkb.fhir import questionnaire as fhir_form

    typer.echo(fhir_codes.encode(fhir_form.questionnaire(_known_version(version))))


@app.command()
def schema() -> None:
    """Print the JSON Schema of a case."""
    import json

    from covkb.input.case import case_schema

    typer.echo(json.dumps(case_schema(), indent=2))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Listen on this address."),
    port: int = typer.Option(8080, "--port", min=0, max=65535,
                             help="Listen on this port; 0 picks a free one (printed on standard error)."),
    log: Optional[Path] = typer.Option(None, "--log", envvar="COVKB_LOG", help=LOG_HELP),
    workers: int = typer.Option(0, "--workers", "-w", min=0, max=64,
                                help="Decider processes; 0 decides on one thread of the server's own process."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, max=3600,
                                  help="Seconds a client has to send a request's body once its headers "
                                       "are in; then it is answered 408 and closed."),
    header_timeout: float = typer.Option(5.0, "--header-timeout", min=0.1, max=3600,
                                         help="Seconds a connection may stay idle and then send a whole "
                                              "request line and headers; a client that sent part of them "
                                              "is answered 408, one that sent nothing is closed."),
    max_connections: int = typer.Option(256, "--max-connections", min=1, max=65536,
                                        help="Open connections at most; the next is answered 503."),
    max_per_client: int = typer.Option(32, "--max-per-client", min=1, max=65536,
                                       help="Open connections from one address (IPv6: one /64) at most; "
                                            "the next is answered 429. GET /health is answered either way."),
) -> None:
    """Serve check, explain and compare over HTTP (POST /v1/check, /v1/explain, /v1/compare;
    GET /v1/versions, /v1/criteria, /v1/schema, /health, /openapi.json).

    Requests waiting together are decided in one grounding. With --log, each decision is
    recorded before it is answered and its decision_id is the log's row id. SIGTERM stops
    accepting, answers what is in flight, closes the log and exits 0."""
    import socket

    from covkb.surfaces.serve import Limits, run

    if log is not None:
        _open_log(log).close()
    limits = Limits(connections=max_connections, per_client=max_per_client, header_seconds=header_timeout,
                    body_seconds=timeout)
    try:
        run(host, port, log, workers, limits)
    except socket.gaierror as error:
        raise _fail(f"--host {host!r}: {error.strerror}") from None
    except OSError as error:
        typer.echo(f"covkb: cannot listen on {host}:{port}: {error.strerror or error}", err=True)
        raise typer.Exit(3) from None


audit_app = typer.Typer(help="Read the decision log: list, show, replay, verify, head (the anchor "
                             "for verify), export and report determinations. The log is --log PATH "
                             "or $COVKB_LOG.",
                        no_args_is_help=True, context_settings=HELP)
app.add_typer(audit_app, name="audit")
LOG_OPTION = typer.Option(..., "--log", envvar="COVKB_LOG", help="The SQLite decision log.")


def _existing_log(log: Path, verifying: bool = False):
    """The log open read-only; a file that is not a covkb log is refused untouched."""
    from covkb.surfaces import audit

    if not log.exists():
        raise _fail(f"{log}: no such decision log")
    try:
        return audit.open_read(log)
    except audit.NotALog as error:
        if verifying and error.damaged:
            typer.echo(f"broken: {error}")
            raise typer.Exit(1) from None
        raise _fail(f"{log}: {error}") from None


DECISIONS = ("covered", "not_covered", "pending", "not_applicable")  # reading 30


def _audit_filters(since: Optional[str], until: Optional[str], decision: Optional[str]) -> None:
    """Refuse a filter no determination could match, naming what is accepted: an empty
    list must mean "none logged", never "you mistyped"."""
    import datetime

    if decision is not None and decision not in DECISIONS:
        raise _fail(f"--decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    for option, value in (("--since", since), ("--until", until)):
        if value is None:
            continue
        try:
            if len(value) != 10:
                raise ValueError
            datetime.date.fromisoformat(value)
        except ValueError:
            raise _fail(f"{option} {value!r}: expected a date YYYY-MM-DD that exists") from None


@audit_app.command("list")
def audit_list(
    log: Path = LOG_OPTION,
    case_id: Optional[str] = typer.Option(None, "--case-id", help="Only this case id."),
    since: Optional[str] = typer.Option(None, "--since", help="Logged on or after this date (YYYY-MM-DD)."),
    until: Optional[str] = typer.Option(None, "--until", help="Logged before this date (YYYY-MM-DD)."),
    decision: Optional[str] = typer.Option(None, "--decision", help="covered, not_covered, pending or not_applicable."),
) -> None:
    """One line per determination: id, time, case id, version, decision and label, and
    `what-if` after a determination decided under a version asked for (--policy-version,
    or one side of compare), which decision statistics leave out."""
    from covkb.surfaces import audit
    from covkb.surfaces.terminal import printable, to_the_second

    _audit_filters(since, until, decision)
    connection = _existing_log(log)
    try:
        for row in audit.rows(connection, case_id=case_id, since=since, until=until, decision=decision):
            fields = (to_the_second(row['logged_at']), row['case_id'], row['policy_version'] or 'none',
                      row['decision'], row['label'])
            mark = "  what-if" if row['what_if'] else ""
            typer.echo("{:>6}  {}  {}  {}  {} ({})".format(row['id'], *(printable(f, lines=False) for f in fields))
                       + mark)
    finally:
        connection.close()


@audit_app.command("show")
def audit_show(
    ident: Optional[int] = typer.Argument(None, metavar="[ID]", help="The determination's id (from `covkb audit list`)."),
    log: Path = LOG_OPTION,
    format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f", help="text, json, markdown or html."),
    case_id: Optional[str] = typer.Option(None, "--case-id", help="Every determination of this case, newest first."),
) -> None:
    """The stored explanation of one determination (or of every determination of one case),
    rendered as `covkb explain` would; json keeps the logged time and the kb and input digests."""
    from covkb.surfaces import audit

    if (ident is None) == (case_id is None):
        raise _fail("give one determination ID or --case-id, not both or neither")
    connection = _existing_log(log)
    try:
        found = list(audit.rows(connection, ident=ident, case_id=case_id))[::-1]
    finally:
        connection.close()
    if not found:
        raise _fail(f"{log}: no determination {ident}" if case_id is None else f"{log}: no determination of case {case_id!r}")
    for number, row in enumerate(found):
        if number and format is not ExplainFormat.json:
            typer.echo("")
        _show_row(row, format, log)


def _show_row(row, format: "ExplainFormat", log: Path) -> None:
    import json

    import msgspec

    from covkb.results.explain import Explanation, as_markdown, as_text
    from covkb.surfaces.terminal import printable, printable_values, to_the_second

    # a stored row may hold what an older covkb accepted: each string shown on one line
    explanation = msgspec.convert(printable_values(msgspec.json.decode(row["explanation_json"])), Explanation)
    head = printable(f"determination {row['id']}, logged {to_the_second(row['logged_at'])}, covkb {row['covkb_version']}, "
            f"kb {row['kb_sha256'][:16]}, input sha256 {row['input_sha256'][:16]}", lines=False)
    if format is ExplainFormat.json:
        record = {key: row[key] for key in ("id", "logged_at", "case_id", "covkb_version", "kb_sha256",
                                            "input_sha256", "version_requested", "policy_version")}
        record["what_if"] = bool(row["what_if"])
        record["explanation"] = json.loads(row["explanation_json"])
        typer.echo(json.dumps(record))
    elif format is ExplainFormat.markdown:
        typer.echo(f"_{head}_\n\n" + as_markdown(explanation))
    elif format is ExplainFormat.html:
        from covkb.surfaces.report import Provenance, determination_page

        typer.echo(determination_page(explanation, Provenance.of_row(row, str(log))), nl=False)
    else:
        typer.echo(head + "\n\n" + as_text(explanation))


class ReplayFormat(str, enum.Enum):
    text = "text"
    csv = "csv"
    jsonl = "jsonl"


def _replay_records(format: "ReplayFormat"):
    """A writer of replay records to standard output: CSV with a header, or JSON lines."""
    import csv
    import json

    from covkb.surfaces.audit import safe_cells
    from covkb.surfaces.report import REPLAY_COLUMNS, replay_record

    if format is ReplayFormat.jsonl:
        return lambda row, now, kb_changed: typer.echo(json.dumps(replay_record(row, now, kb_changed)))
    writer = safe_cells(csv.writer(sys.stdout))
    writer.writerow(REPLAY_COLUMNS)
    return lambda row, now, kb_changed: writer.writerow(
        [replay_record(row, now, kb_changed)[c] for c in REPLAY_COLUMNS])


@audit_app.command("replay")
def audit_replay(
    ident: Optional[int] = typer.Argument(None, metavar="[ID]", help="One determination; all when omitted."),
    log: Path = LOG_OPTION,
    all_rows: bool = typer.Option(False, "--all", help="Replay every determination (the default without ID)."),
    format: ReplayFormat = typer.Option(ReplayFormat.text, "--format", "-f",
                                        help="text: one line each; csv or jsonl: one record each with its kind of "
                                             "change (decision, criteria, reworded, unreadable), the decision logged "
                                             "and now, and the criteria that changed: the full list the report "
                                             "counts."),
    workers: int = typer.Option(0, "--workers", "-w", min=0,
                                help="Worker processes deciding chunks side by side, as batch does; "
                                     "0 means one per core."),
) -> None:
    """Re-decide stored inputs with the current knowledge base and list every determination
    that would now differ. Exit 0 when none differ, 1 when any does."""
    from covkb.surfaces import audit, batch
    from covkb.surfaces.terminal import printable

    connection = _existing_log(log)
    differ = 0
    records = None if format is ReplayFormat.text else _replay_records(format)
    try:
        total = audit.count(connection, None if all_rows else ident)
        replayed = batch.replay(connection, None if all_rows else ident, workers=workers)
        for row, now, _, kb_changed in replayed:
            differ += 1
            if records is not None:
                records(row, now, kb_changed)
                continue
            cause = "the knowledge base changed since" if kb_changed else "same knowledge base"
            now_text = now if isinstance(now, str) else f"{now.decision} ({now.label}) now"
            typer.echo(printable(f"{row['id']:>6}  {row['case_id']}: {row['decision']} ({row['label']}) then, "
                                 f"{now_text}; {cause}", lines=False))
    finally:
        connection.close()
    engine = f" by the {replayed.choice.engine} engine" if replayed.choice else ""
    typer.echo(f"replayed {total} determination(s) with kb {audit.kb_hash()[:16]}{engine}: {differ} differ",
               err=True)
    if differ:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(log: Path = LOG_OPTION) -> None:
    """Print the row count and head hash: keep them elsewhere (a ticket, another machine),
    and `audit verify --rows N --expect-head HASH` later proves no row up to there was cut
    or rewritten since."""
    from covkb.surfaces import audit

    connection = _existing_log(log)
    try:
        verdict = audit.verify(connection)
    finally:
        connection.close()
    if not verdict.ok:
        typer.echo(f"broken: {verdict.problem}")
        raise typer.Exit(1)
    typer.echo(f"rows {verdict.rows} head {verdict.head}")


@audit_app.command("verify")
def audit_verify(
    log: Path = LOG_OPTION,
    expect_head: Optional[str] = typer.Option(None, "--expect-head", metavar="HASH",
                                              help="The head hash `covkb audit head` printed earlier (with --rows)."),
    rows: Optional[int] = typer.Option(None, "--rows", min=0, metavar="N",
                                       help="The row count `covkb audit head` printed with that hash."),
) -> None:
    """Recompute the hash chain and name the first edited, inserted or deleted row.
    Exit 0 when intact, 1 when broken. The chain alone cannot show rows cut from the end,
    an emptied table or a chain recomputed after an edit: give the anchor `covkb audit head`
    printed (--expect-head HASH --rows N) to prove none of that happened since."""
    from covkb.surfaces import audit

    if (expect_head is None) != (rows is None):
        raise _fail("--expect-head and --rows go together: both as `covkb audit head` printed them")
    connection = _existing_log(log, verifying=True)
    try:
        verdict = audit.verify(connection, expect_head, rows)
    finally:
        connection.close()
    if verdict.ok:
        typer.echo(f"intact: {verdict.rows} rows, head {verdict.head}")
        return
    typer.echo(f"broken: {verdict.problem}")
    raise typer.Exit(1)


class ExportFormat(str, enum.Enum):
    csv = "csv"
    jsonl = "jsonl"


@audit_app.command("export")
def audit_export(
    log: Path = LOG_OPTION,
    format: ExportFormat = typer.Option(ExportFormat.csv, "--format", "-f", help="csv for a spreadsheet, or jsonl."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write here instead of standard output. " + OUT_HELP),
) -> None:
    """Every determination, for the auditor's spreadsheet."""
    from covkb.surfaces import audit

    from covkb.surfaces.batch import CouldNotFinish, output
    from covkb.input.case import InvalidCase

    connection = _existing_log(log)
    try:
        with output(out, [log]) as sink:
            audit.export(connection, format.value, sink)
    except InvalidCase as error:
        raise _fail(error.message) from None
    except CouldNotFinish as error:
        raise _stop(f"audit export: {error}") from None
    finally:
        connection.close()


def _day(option: str, value: Optional[str]) -> Optional[str]:
    import datetime
    import re

    if value is not None:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError
            datetime.date.fromisoformat(value)
        except ValueError:
            raise _fail(f"{option} {value!r}: expected a date YYYY-MM-DD") from None
    return value


@audit_app.command("report")
def audit_report(
    log: Path = LOG_OPTION,
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write the HTML report here instead of standard output. " + OUT_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="Only determinations logged on or after this date (YYYY-MM-DD)."),
    until: Optional[str] = typer.Option(None, "--until", help="Only determinations logged before this date (YYYY-MM-DD)."),
    replay_all: bool = typer.Option(False, "--replay-all",
                                    help="Decide every determination again, not only those logged under "
                                         "another knowledge base or covkb version."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, show_default=False,
                                        help="List at most this many determinations decided differently (default 50), "
                                             "each with its page, decision changes first; the rest are counted "
                                             "(`covkb audit replay --format csv` lists every one)."),
    include_what_if: bool = typer.Option(False, "--include-what-if",
                                         help="Count what-ifs (decided under --policy-version, or one side of "
                                              "compare) with the determinations; by default they are left out "
                                              "of every count and the report says how many."),
) -> None:
    """One self-contained HTML page over the logged determinations: decisions and labels
    per policy version, how often each criterion was not met or unknown, the most
    frequent missing fields and names to clarify, a chart of decisions per week, and what
    the current knowledge base decides differently: counted by kind of change (the
    decision, by decision then and now and by criterion; or only criteria), then the
    first --limit of them listed, decision changes first, each linked to its page. Exit 0
    when written, 3 when the report could not be written."""
    from covkb.surfaces.batch import CouldNotFinish, output
    from covkb.input.case import InvalidCase
    from covkb.surfaces.report import LIMIT, audit_report as write_report

    since, until = _day("--since", since), _day("--until", until)
    limit = LIMIT if limit is None else limit
    connection = _existing_log(log)
    try:
        with output(out, [log]) as sink:  # no half-written report
            write_report(connection, sink, since, until, replay_all, str(log), limit, include_what_if)
    except InvalidCase as error:
        raise _stop(f"audit report: --out {out}: {error.expected}") from None
    except CouldNotFinish as error:
        raise _stop(f"audit report: {error}") from None
    finally:
        connection.close()


def main() -> None:
    """The full command line (covkb.surfaces.main reads a plain `check` without it)."""
    command.guarded(app)
