"""covkb's command line: decide prior-authorization requests for idecabtagene
vicleucel (Abecma) against coverage policy 2024041."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help=__doc__ + "\n\nA case is a JSON object (or YAML, or .lp facts); see `covkb schema`. "
    "Decisions: covered, not_covered, pending (documentation needed), not_applicable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(str, enum.Enum):
    text = "text"
    json = "json"


VERSION_HELP = ("Apply this policy version (e.g. 2024-08-21) instead of the one in force "
                "on the date of service; `covkb versions` lists them.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"covkb: {message}", err=True)
    return typer.Exit(2)


def _known_version(version: Optional[str]) -> Optional[str]:
    if version is None:
        return None
    from covkb.api import versions

    known = versions()
    if version not in known:
        raise _fail(f"--version {version!r}: expected one of {', '.join(sorted(known))}")
    return version


@app.command()
def check(
    case: Path = typer.Argument(..., help="The case: a .json, .yaml/.yml or .lp file, or - for JSON on standard input.",
                                allow_dash=True),
    version: Optional[str] = typer.Option(None, "--version", help=VERSION_HELP),
    format: Format = typer.Option(Format.text, "--format", "-f",
                                  help="text: decision, a table of criteria, advisories and missing "
                                       "documentation; json: the result object of the contract."),
) -> None:
    """Decide one request and show every criterion's status and why.

    Exit 0 when decided; 2 when the case is invalid (the message names the field).
    """
    from covkb.api import check as decide_one
    from covkb.render import as_json, as_text

    version = _known_version(version)
    result = decide_one(_load(case), version)
    typer.echo(as_json(result) if format is Format.json else as_text(result))


@app.command()
def batch(
    cases_file: Path = typer.Argument(..., metavar="CASES.jsonl",
                                      help="One JSON case per line (- for standard input). Blank lines are skipped.",
                                      allow_dash=True),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write result lines here instead of standard output."),
    version: Optional[str] = typer.Option(None, "--version", help=VERSION_HELP),
    chunk: int = typer.Option(500, "--chunk", min=1, max=100_000,
                              help="Cases grounded together in one clingo program."),
    workers: int = typer.Option(0, "--workers", "-w", min=0,
                                help="Worker processes deciding chunks side by side; 0 means one per core."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress and no summary line on standard error."),
) -> None:
    """Decide many requests: one JSON result line per case line, in input order.

    A line that is not a valid case gives {"case_id": ..., "line": N, "error": ...}
    and the rest are still decided. Blank lines are skipped. Progress shows on a
    terminal; a summary line ends the run on standard error. Exit 0 when every line
    was decided, 1 when any line was invalid.
    """
    import os

    from covkb.batch import run

    version = _known_version(version)
    try:
        source = sys.stdin.buffer if str(cases_file) == "-" else cases_file.open("rb")
    except OSError as error:
        raise _fail(f"{cases_file}: {error.strerror}") from None
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        summary = run(source, sink, version=version, chunk=chunk,
                      workers=workers or os.cpu_count() or 1,
                      progress=not quiet and sys.stderr.isatty())
    finally:
        if out:
            sink.close()
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


def _load(case: Path):
    from covkb import case as cases

    try:
        if str(case) == "-":
            return cases.from_json(sys.stdin.buffer.read())
        return cases.load(case)
    except FileNotFoundError:
        raise _fail(f"{case}: no such file") from None
    except IsADirectoryError:
        raise _fail(f"{case}: is a directory, not a case file") from None
    except cases.InvalidCase as error:
        raise _fail(f"{case}: {error.message}") from None


@app.command()
def explain(
    case: Path = typer.Argument(..., help="The case: .json, .yaml/.yml or .lp, or - for JSON on standard input.",
                                allow_dash=True),
    version: Optional[str] = typer.Option(None, "--version", help=VERSION_HELP),
    format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f",
                                         help="text for a terminal, json for a program, markdown for an audit report."),
) -> None:
    """Explain a decision for an auditor: the rule that made it, and for every criterion
    the policy's words, the facts and comparisons behind its status, what to document
    when unknown, and whether a criterion not met can be remedied."""
    from covkb.explain import as_markdown, as_text, explain as explain_case
    from covkb.render import as_json

    version = _known_version(version)
    explanation = explain_case(_load(case), version)
    if format is ExplainFormat.json:
        typer.echo(as_json(explanation))
    elif format is ExplainFormat.markdown:
        typer.echo(as_markdown(explanation))
    else:
        typer.echo(as_text(explanation))


@app.command()
def compare(
    case: Path = typer.Argument(..., help="The case: .json, .yaml/.yml or .lp, or - for JSON on standard input.",
                                allow_dash=True),
    format: Format = typer.Option(Format.text, "--format", "-f",
                                  help="text: criteria side by side, differing rows marked; json: both explanations."),
) -> None:
    """Decide one case under every policy version, side by side."""
    from covkb.explain import compare as compare_case, compare_text
    from covkb.render import as_json

    one = _load(case)
    sides = compare_case(one)
    if format is Format.json:
        import json

        differs = sorted({s.id for side in sides for s in side.criteria
                          if len({dict((t.id, t.status) for t in other.criteria).get(s.id)
                                  for other in sides}) > 1})
        typer.echo(json.dumps({"case_id": one.case_id,
                               "versions": [json.loads(as_json(side)) for side in sides],
                               "criteria_differ": differs,
                               "decisions_differ": len({(s.decision, s.label) for s in sides}) > 1}))
    else:
        typer.echo(compare_text(one.case_id, sides))


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
    from covkb.diff import as_text as diff_text, diff
    from covkb.render import as_json

    ordered = sorted(known())
    pair = [_known_version(from_version) or ordered[0], _known_version(to_version) or ordered[-1]]
    if pair[0] == pair[1]:
        raise _fail("--from and --to name the same version")
    result = diff(pair)
    typer.echo(as_json(result) if format is Format.json else diff_text(result))


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
    version: Optional[str] = typer.Option(None, "--version", help="Only this version."),
) -> None:
    """Print every criterion id of each version with the policy's words."""
    from covkb import decide

    version = _known_version(version)
    policy = decide.policy()
    for name in sorted(policy.criteria):
        if version and name != version:
            continue
        typer.echo(f"policy {policy.id}, version {name}")
        for ident, text in policy.criteria[name]:
            typer.echo(f"  {ident:<11}{text}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of a case."""
    import json

    from covkb.case import case_schema

    typer.echo(json.dumps(case_schema(), indent=2))


def main() -> None:
    app()
