"""HTML for auditors: the page of one determination and the report over a decision log,
read back with an HTML parser."""

import datetime
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from cases import DROP, IN_2024, case
from covkb import __version__
from covkb.surfaces import audit
from covkb.input.case import from_object
from covkb.surfaces.cli import app
from htmltree import parse

ROOT = Path(__file__).parents[1]
FACTS = ROOT / "facts"
# reading 8: every criterion of the applied version, in policy order.
IDS = {"2024-08-21": "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split(),
       "2025-11-01": "specialist center 1 2 3 3a 3b 3c 4 5a 5b 6 7 8 dose".split()}
HOSTILE = "<script>alert('case')</script>"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"

runner = CliRunner()


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def page_of(data: dict, tmp_path) -> str:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data))
    return cli("explain", path, "--format", "html")


def criterion_rows(tree) -> dict:
    table = tree.find("table", "criteria")
    return {row.attrs["data-criterion"]: row for row in table.find_all("tr") if "data-criterion" in row.attrs}


def assert_self_contained(tree, html: str) -> None:
    assert not tree.find_all("script") and "<script" not in html.lower()
    assert not tree.find_all("link") and not tree.find_all("img") and not tree.find_all("iframe")
    for element in tree.iter():
        for name in ("src", "href", "action", "xlink:href"):
            value = element.attrs.get(name) or ""
            assert not value or value.startswith("#"), f"<{element.tag} {name}={value!r}> leaves the page"
    style = "".join(s.text() for s in tree.find_all("style"))
    assert "url(" not in style and "@import" not in style
    assert "@media print" in style and "@page" in style


# ---------------------------------------------------------------------------
# The page of one determination
# ---------------------------------------------------------------------------
def test_the_page_is_self_contained_and_prints():
    html = cli("explain", FACTS / "not-covered-crcl-45-2024.json", "--format", "html")
    assert_self_contained(parse(html), html)


@pytest.mark.parametrize("example, version", [("not-covered-crcl-45-2024.json", "2024-08-21"),
                                              ("covered-2025.json", "2025-11-01")])
def test_the_page_has_one_row_per_criterion_of_the_version_in_policy_order(example, version):
    tree = parse(cli("explain", FACTS / example, "--format", "html"))
    assert list(criterion_rows(tree)) == IDS[version]
    assert f"version {version}" in tree.find("main").text()


def test_creatinine_clearance_of_45_fails_5d_and_the_page_says_so_at_the_top_and_in_its_row():
    # Policy 2024-08-21 5d: "Creatinine clearance less than or equal to 45 mL/min" is excluded.
    tree = parse(cli("explain", FACTS / "not-covered-crcl-45-2024.json", "--format", "html"))
    header = tree.find("header")
    assert "not_covered" in header.find("span", "decision").classes()
    assert "does_not_meet_primary_coverage_criteria" in header.text()
    assert "5d" in header.find("p", "reason").text()
    row = criterion_rows(tree)["5d"]
    status, words, facts, remedy = row.find_all("td")  # the id is the row header
    assert "not_met" in row.classes() and "not met" in status.text()
    assert "Creatinine clearance less than or equal to 45 mL/min" in words.text()
    assert "creatinine_clearance_ml_min = 45" in facts.text()
    assert remedy.text().strip()


def test_an_undocumented_field_leaves_its_criterion_unknown_and_the_page_names_it(tmp_path):
    # reading 1: an absent field is not documented; the criterion needing it is unknown.
    tree = parse(page_of(case(organ_function_adequate=DROP), tmp_path))
    row = criterion_rows(tree)["6"]
    assert "unknown" in row.classes()
    assert "organ_function_adequate" in row.find_all("td")[3].text()
    # the page lists what to send in words, with the field path (docs/case-format.md, `documentation`)
    [item] = tree.find("ul", "documentation").find_all("li")
    assert "organ_function_adequate" in item.text()
    assert "pending" in tree.find("span", "decision").classes()


def test_the_page_states_covkb_the_knowledge_base_and_when():
    tree = parse(cli("explain", FACTS / "covered-2025.json", "--format", "html"))
    provenance = tree.find("dl", "provenance")
    terms = [dt.text() for dt in provenance.find_all("dt")]
    values = [dd.text() for dd in provenance.find_all("dd")]
    given = dict(zip(terms, values))
    assert given["covkb"] == __version__
    assert given["knowledge base (SHA-256)"] == audit.kb_hash()
    decided = datetime.datetime.fromisoformat(given["decided at"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - decided) < datetime.timedelta(minutes=5)


def test_every_string_from_the_case_is_text_not_markup(tmp_path):
    html = page_of(case(case_id=HOSTILE, prior_lines=[["lenalidomide", "bortezomib"], ["daratumumab", HOSTILE_NAME]]),
                   tmp_path)
    tree = parse(html)
    assert_self_contained(tree, html)
    assert tree.find("h1").text() == HOSTILE
    assert HOSTILE in tree.find("title").text()
    assert HOSTILE_NAME in tree.find("ul", "unrecognised").text()


# ---------------------------------------------------------------------------
# The report over a decision log
# ---------------------------------------------------------------------------
def logged_cases() -> list[dict]:
    """14 determinations whose outcomes the policy and docs/reading.md fix."""
    out = []
    for i in range(12):
        if i % 3 == 0:  # policy 2025-11-01 criterion 6 not met: not covered
            out.append(case(case_id=f"C{i}", organ_function_adequate=False))
        elif i % 4 == 1:  # criterion 6 undocumented: pending, organ_function_adequate missing
            out.append(case(case_id=f"C{i}", organ_function_adequate=DROP))
        else:
            out.append(case(case_id=f"C{i}"))
    out.append(case(case_id="OLD", date_of_service="2024-08-01"))  # reading 5: criteria_not_on_file
    out.append(case(case_id="V2024", date_of_service=IN_2024))  # every criterion of 2024-08-21 met
    return out


@pytest.fixture(scope="module")
def pristine_log(tmp_path_factory):
    """The log of logged_cases(), written once by `covkb batch --log`."""
    where = tmp_path_factory.mktemp("log")
    path = where / "log.db"
    lines = where / "in.jsonl"
    lines.write_text("".join(json.dumps(c) + "\n" for c in logged_cases()))
    cli("batch", lines, "--out", where / "out.jsonl", "--log", path, "--workers", "1", "--quiet")
    return path


@pytest.fixture()
def log(pristine_log, tmp_path):
    """A copy of that log for each test to read, edit or break on its own."""
    path = tmp_path / "log.db"
    shutil.copyfile(pristine_log, path)
    return path


def report(log, *args) -> str:
    out = log.parent / "report.html"
    assert cli("audit", "report", "--log", log, "--out", out, *args) == ""
    return out.read_text()


def cells(table) -> list[list[str]]:
    """Each body row's cells, its row header first."""
    return [[cell.text().strip() for cell in tr.children if getattr(cell, "tag", None) in ("th", "td")]
            for tr in table.find("tbody").find_all("tr")]


def test_the_report_is_self_contained(log):
    html = report(log)
    assert_self_contained(parse(html), html)


def test_the_report_counts_decisions_and_labels_per_version(log):
    tree = parse(report(log))
    totals = {td.attrs["data-decision"]: int(td.text().split()[0])
              for td in tree.find("table", "totals").find_all("td") if "data-decision" in td.attrs}
    assert totals == {"covered": 7, "not_covered": 4, "pending": 2, "not_applicable": 1}
    rows = {(v, d, label): int(n) for v, d, label, n, _ in cells(tree.find("table", "outcomes"))}
    assert rows == {("2024-08-21", "covered", "meets_primary_coverage_criteria"): 1,
                    ("2025-11-01", "covered", "meets_primary_coverage_criteria"): 6,
                    ("2025-11-01", "not covered", "does_not_meet_primary_coverage_criteria"): 4,
                    ("2025-11-01", "pending", "documentation_required"): 2,
                    ("none", "not applicable", "criteria_not_on_file"): 1}


def test_the_report_counts_each_criterion_not_met_and_unknown_in_policy_order(log):
    tree = parse(report(log))
    table = tree.find("table", "criteria-tally", data_version="2025-11-01")
    rows = {r[0]: (int(r[2]), int(r[4]), int(r[6])) for r in cells(table)}
    assert list(rows) == IDS["2025-11-01"]
    assert rows["6"] == (4, 2, 6)
    assert all(rows[i] == (0, 0, 12) for i in rows if i != "6")
    assert "adequate organ and bone marrow function" in cells(table)[IDS["2025-11-01"].index("6")][1]
    table = tree.find("table", "criteria-tally", data_version="2024-08-21")
    assert [r[0] for r in cells(table)] == IDS["2024-08-21"]


def test_the_report_ranks_the_missing_fields(log):
    tree = parse(report(log))
    assert [[r[0], r[2], r[3]] for r in cells(tree.find("table", "missing"))] == [
        ["organ_function_adequate", "documentation", "2"]]


def test_the_week_chart_is_inline_svg_with_every_determination(log):
    tree = parse(report(log))
    svg = tree.find("svg", "chart")
    weeks = svg.find_all("g", "week")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert [g.attrs["data-week"] for g in weeks] == [(today - datetime.timedelta(days=today.weekday())).isoformat()]
    assert sum(int(g.attrs["data-total"]) for g in weeks) == 14
    assert len(weeks[0].find_all("rect")) == 4  # one segment per decision that occurred


def test_since_and_until_bound_the_period(log):
    tomorrow = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)).isoformat()
    tree = parse(report(log, "--since", tomorrow))
    assert tree.find("p", "period").text().split()[0] == "0"
    tree = parse(report(log, "--until", tomorrow))
    assert tree.find("p", "period").text().split()[0] == "14"


@pytest.mark.parametrize("option, value", [("--since", "2026-02-30"), ("--until", "yesterday")])
def test_a_bad_date_is_refused_naming_the_option(log, option, value):
    result = runner.invoke(app, ["audit", "report", "--log", str(log), option, value])
    assert result.exit_code == 2
    assert option in result.output and value in result.output


def test_a_log_decided_by_the_current_kb_has_nothing_decided_differently(log):
    tree = parse(report(log, "--replay-all"))
    assert not tree.find_all("table", "replayed")
    assert not tree.find_all("section", "determination")


def logged_then(log, data: dict, decision: str, label: str) -> int:
    """Append a row as an earlier knowledge base would have logged it, deciding `decision`."""
    from covkb.api import determine_explained

    one = from_object(data)
    result, explanation = determine_explained([one])[0]
    then = msgspec.structs.replace(result, decision=decision, label=label)
    connection = audit.connect(log)
    try:
        audit.append(connection, [audit.prepare(one, None, then, explanation, "0" * 64)])
        return connection.execute("SELECT max(id) FROM determinations").fetchone()[0]
    finally:
        connection.close()


def test_a_determination_decided_differently_now_is_listed_and_linked_to_its_page(log):
    # A row logged under another kb that covered what reading 31 now refuses: criterion 6
    # not met (organ_function_adequate false) leaves the case not covered.
    ident = logged_then(log, case(case_id=HOSTILE, organ_function_adequate=False),
                        "covered", "meets_primary_coverage_criteria")
    html = report(log)
    tree = parse(html)
    assert_self_contained(tree, html)
    (row,) = tree.find("table", "replayed").find("tbody").find_all("tr")
    assert row.attrs["data-row"] == str(ident)
    assert row.find_all("td")[0].text() == HOSTILE
    assert "covered" in row.find_all("td")[1].text() and "not covered" in row.find_all("td")[2].text()
    link = row.find("a").attrs["href"]
    assert link == f"#d{ident}"
    page = tree.find(id=f"d{ident}")
    assert page.find("h3").text() == HOSTILE
    assert "not_covered" in page.find("p", "now").find("span", "decision").classes()
    given = dict(zip([dt.text() for dt in page.parent.find_all("dt")], [dd.text() for dd in page.parent.find_all("dd")]))
    assert given["decision log row"].startswith(str(ident))
    assert given["knowledge base (SHA-256)"] == "0" * 64


def test_re_deciding_over_worker_processes_finds_what_one_process_finds(log):
    from covkb.surfaces.report import redecided, tally

    differ = []
    for i in range(7):
        if i % 2:  # logged as covered, but criterion 6 not met: not covered now (reading 31)
            differ.append(logged_then(log, case(case_id=f"T{i}", organ_function_adequate=False),
                                      "covered", "meets_primary_coverage_criteria"))
        else:  # logged as every criterion met decides it now
            logged_then(log, case(case_id=f"T{i}"), "covered", "meets_primary_coverage_criteria")
    connection = audit.connect(log)
    try:
        counted = tally(connection)
        found = [redecided(connection, counted, chunk=2, workers=n) for n in (1, 2)]
        assert [f.considered for f in found] == [7, 7]
        assert [e["id"] for e in found[0].entries()] == differ
        assert list(found[0].entries()) == list(found[1].entries())
        assert list(found[0].embedded()) == list(found[1].embedded())
    finally:
        connection.close()
        for f in found:
            f.close()


def test_a_determination_decided_alike_in_other_words_is_counted_not_listed(log):
    from covkb.api import determine_explained

    one = from_object(case(case_id="REWORDED"))
    result, explanation = determine_explained([one])[0]
    first = msgspec.structs.replace(result.criteria[0], because=["in the words of an earlier knowledge base"])
    then = msgspec.structs.replace(result, criteria=[first, *result.criteria[1:]])
    connection = audit.connect(log)
    try:
        audit.append(connection, [audit.prepare(one, None, then, explanation, "0" * 64)])
    finally:
        connection.close()
    tree = parse(report(log))
    assert not tree.find_all("table", "replayed")
    assert "1 more is decided alike in other words" in " ".join(tree.find(id="replayed").parent.text().split())


def test_audit_show_renders_a_logged_determination_with_its_row(log):
    tree = parse(cli("audit", "show", "1", "--log", log, "--format", "html"))
    assert tree.find("h1").text() == "C0"
    given = dict(zip([dt.text() for dt in tree.find_all("dt")], [dd.text() for dd in tree.find_all("dd")]))
    assert given["decision log row"].startswith("1 ")
    assert given["knowledge base (SHA-256)"] == audit.kb_hash()


def test_the_report_is_written_whole_or_not_at_all(log, tmp_path):
    missing_dir = tmp_path / "no" / "such"
    result = runner.invoke(app, ["audit", "report", "--log", str(log), "--out", str(missing_dir / "r.html")])
    assert result.exit_code == 3 and "r.html" in result.output


# ---------------------------------------------------------------------------
def test_the_week_chart_keeps_empty_weeks_and_scales_to_a_round_ceiling():
    from covkb.surfaces.report import week_chart

    first = datetime.date(2026, 11, 2)
    chart = week_chart(Counter({(first, "covered"): 3, (first + datetime.timedelta(weeks=3), "pending"): 4}))
    assert [b.week for b in chart.bars] == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    assert [b.total for b in chart.bars] == [3, 0, 0, 4]
    assert [value for _, value in chart.ticks] == [0, 1, 2, 3, 4, 5]  # 5: the 1-2-5 step at or above 4
    (pending,) = chart.bars[3].segments
    assert pending[0] == "pending" and pending[2] == pytest.approx(chart.plot_height * 4 / 5, abs=0.01)


def test_covkb_check_does_not_load_the_template_engine():
    # `covkb check` must start in under 150 ms: Jinja2 loads only for the HTML commands.
    code = ("import sys, covkb.surfaces.cli\nsys.argv = ['covkb', 'check', sys.argv[1]]\n"
            "try:\n    covkb.surfaces.cli.main()\nexcept SystemExit:\n    pass\nprint('jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(FACTS / "covered-2025.json")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


# ---------------------------------------------------------------------------
# Readers of every kind: structure, words, what-ifs, bidirectional text, a kb change
# ---------------------------------------------------------------------------
def headings(tree) -> list[int]:
    return [int(e.tag[1]) for e in tree.iter() if e.tag in ("h1", "h2", "h3", "h4", "h5", "h6")]


def assert_headings_in_order(tree) -> None:
    levels = headings(tree)
    assert levels[0] == 1 and levels.count(1) == 1
    for before, after in zip(levels, levels[1:]):
        assert after <= before + 1, f"a heading jumps from h{before} to h{after}: {levels}"


def assert_tables_named(tree) -> None:
    for table in tree.find_all("table"):
        assert table.find_all("caption"), f"a table without a caption: {table.classes()}"
        for th in table.find_all("th"):
            assert th.attrs.get("scope") in ("col", "row"), f"<th> without scope: {th.text()!r}"


@pytest.mark.parametrize("example", ["covered-2025.json", "pending-2025.json", "not-covered-crcl-45-2024.json"])
def test_a_page_is_structured_for_a_screen_reader(example):
    tree = parse(cli("explain", FACTS / example, "--format", "html"))
    assert_headings_in_order(tree)
    assert_tables_named(tree)
    # the criterion id heads its row
    for ident, row in criterion_rows(tree).items():
        header = row.find("th")
        assert header.attrs["scope"] == "row" and header.text() == ident


def test_the_report_is_structured_for_a_screen_reader(log):
    ident = logged_then(log, case(case_id="CHANGED", organ_function_adequate=False),
                        "covered", "meets_primary_coverage_criteria")
    tree = parse(report(log))
    assert len(tree.find_all("main")) == 1
    assert_headings_in_order(tree)
    assert_tables_named(tree)
    # an embedded page is one level below the section that holds it, its parts one further
    page = tree.find(id=f"d{ident}")
    assert page.find("h3").text() == "CHANGED"
    assert "as logged" in page.find("p", "badges").text().lower()
    link = tree.find("table", "replayed").find("a")
    assert link.text() == f"row {ident}"


def test_the_page_shows_the_date_of_service_beside_the_version(tmp_path):
    # reading 5 (third release): date_of_service shown beside the version it selected.
    tree = parse(page_of(case(date_of_service="2025-11-12"), tmp_path))
    assert "version 2025-11-01, date of service 2025-11-12" in " ".join(tree.find("p", "version").text().split())


def test_a_logged_page_shows_the_date_of_service_from_the_logged_input(log):
    tree = parse(cli("audit", "show", "1", "--log", log, "--format", "html"))
    assert f"date of service {case()['date_of_service']}" in " ".join(tree.find("p", "version").text().split())


def test_timestamps_are_shown_to_the_second(log):
    tree = parse(report(log))
    period = tree.find("p", "period").text()
    stamps = [w.rstrip(",.;") for w in period.split() if w[:2] == "20" and "T" in w]
    assert stamps and all(len(datetime.datetime.fromisoformat(s).isoformat()) == len(s) and
                          datetime.datetime.fromisoformat(s).microsecond == 0 for s in stamps)
    page = parse(cli("audit", "show", "1", "--log", log, "--format", "html"))
    given = dict(zip([dt.text() for dt in page.find_all("dt")], [dd.text() for dd in page.find_all("dd")]))
    assert datetime.datetime.fromisoformat(given["logged at"]).microsecond == 0
    assert "." not in given["logged at"]


BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_bidirectional_controls_are_shown_as_escapes_in_every_html_view(log, tmp_path):
    # A case id holding U+202E must not reorder the heading it stands in.
    hostile = "PA-1\u202eNOT COVERED\u2066x\u200f"
    page = page_of(case(case_id=hostile), tmp_path)
    assert not set(BIDI) & set(page)
    assert parse(page).find("h1").text() == "PA-1\\u202eNOT COVERED\\u2066x\\u200f"
    ident = logged_then(log, case(case_id=hostile, organ_function_adequate=False),
                        "covered", "meets_primary_coverage_criteria")
    shown = cli("audit", "show", str(ident), "--log", log, "--format", "html")
    whole = report(log)
    for html in (shown, whole):
        assert not set(BIDI) & set(html)
        assert "PA-1\\u202eNOT COVERED" in html


def logged_what_if(log, version: str = "2024-08-21") -> None:
    path = log.parent / "what-if.json"
    path.write_text(json.dumps(case(case_id="WHAT-IF")))
    cli("check", path, "--policy-version", version, "--log", log)


def test_a_what_if_is_marked_and_left_out_of_the_statistics(log):
    # reading 7 (third release): results decided under --policy-version are marked and kept
    # out of decision statistics.
    before = parse(report(log))
    logged_what_if(log)
    after = parse(report(log))
    assert after.find("p", "period").text().split()[0] == before.find("p", "period").text().split()[0] == "14"
    assert cells(after.find("table", "outcomes")) == cells(before.find("table", "outcomes"))
    assert "1 what-if" in after.find("p", "what-ifs").text()
    counted = parse(report(log, "--include-what-if"))
    assert counted.find("p", "period").text().split()[0] == "15"
    rows = {(r[0], r[1], r[2]): r[3] for r in cells(counted.find("table", "outcomes"))}
    assert rows[("2024-08-21", "covered", "meets_primary_coverage_criteria")] == "2"


def test_a_what_if_is_marked_in_the_log_the_list_the_export_and_its_page(log):
    logged_what_if(log)
    lines = cli("audit", "list", "--log", log).splitlines()
    assert lines[-1].endswith("what-if") and not any(line.endswith("what-if") for line in lines[:-1])
    records = [json.loads(line) for line in cli("audit", "export", "--log", log, "--format", "jsonl").splitlines()]
    assert [r["what_if"] for r in records] == [False] * 14 + [True]
    assert records[-1]["explanation"]["what_if"] is True
    shown = [json.loads(cli("audit", "show", str(i), "--log", log, "--format", "json")) for i in (1, 15)]
    assert [record["what_if"] for record in shown] == [False, True]
    page = parse(cli("audit", "show", "15", "--log", log, "--format", "html"))
    assert page.find("span", "what-if").text() == "what-if"
    assert not parse(cli("audit", "show", "1", "--log", log, "--format", "html")).find_all("span", "what-if")


def test_each_side_of_compare_is_a_what_if():
    sides = json.loads(cli("compare", FACTS / "covered-2025.json", "--format", "json"))["versions"]
    assert [side["what_if"] for side in sides] == [True, True]
    assert "what_if" not in json.loads(cli("check", FACTS / "covered-2025.json", "--format", "json"))


def test_the_csv_export_has_the_reason_and_the_date_of_service(log):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(cli("audit", "export", "--log", log, "--format", "csv"))))
    first = rows[0]
    assert first["date_of_service"] == case()["date_of_service"]
    assert first["what_if"] == "False"
    assert first["reason"].startswith("not covered") and "criterion 6" in first["reason"]


def test_a_case_pended_only_on_a_name_is_under_missing_documentation(log, tmp_path):
    # reading 28: an unrecognised name needed by a criterion pends the case for clarification.
    path = tmp_path / "name.json"
    path.write_text(json.dumps(case(case_id="NAME", prior_lines=[["lenalidomide", "bortezomib"], ["Daratumumob"]])))
    result = json.loads(cli("check", path, "--format", "json", "--log", log))
    assert result["decision"] == "pending" and result["missing"] == []
    tree = parse(report(log))
    rows = {(r[0], r[2]): r[3] for r in cells(tree.find("table", "missing"))}
    assert rows[("prior_lines", "a name to clarify")] == "1"


def test_counts_carry_thousands_separators():
    from covkb.surfaces.report import thousands

    assert [thousands(n) for n in (7, 1234, 20000, 1234567)] == ["7", "1,234", "20,000", "1,234,567"]


def test_after_a_kb_change_the_report_counts_by_kind_and_lists_decision_changes_first(tmp_path):
    import reportlogs

    log = tmp_path / "changed.db"
    # rows 1-4 changed their decision, 5-10 only criterion 5b; 11-13 decided alike
    reportlogs.build(log, rows=20, decision_changes=4, criteria_changes=6, alike=3)
    tree = parse(report(log, "--limit", "7"))
    kinds = {tr.attrs["data-kind"]: tr.find("td").text() for tr in tree.find("table", "change-kinds").find_all("tr")
             if "data-kind" in tr.attrs}
    assert kinds == {"decision": "4", "criteria": "6"}
    (pair,) = tree.find("table", "decision-changes").find("tbody").find_all("tr")
    assert (pair.attrs["data-from"], pair.attrs["data-to"], pair.find("td").text()) == ("covered", "not_covered", "4")
    behind = cells(tree.find("table", "criterion-changes", data_kind="decision"))
    assert behind == [["6", "met → not met", "4"]]
    assert cells(tree.find("table", "criterion-changes", data_kind="criteria")) == [["5b", "not met → met", "6"]]
    listed = tree.find("table", "replayed").find("tbody").find_all("tr")
    assert [r.attrs["data-row"] for r in listed] == [str(i) for i in range(1, 8)]
    assert [r.attrs["data-kind"] for r in listed] == ["decision"] * 4 + ["criteria"] * 3
    assert len(tree.find_all("section", "determination")) == 7
    assert "3 more are left out" in " ".join(tree.find("p", "listed").text().split())


def test_the_full_list_of_changes_is_in_the_replay_export(tmp_path):
    import csv
    import io

    import reportlogs

    log = tmp_path / "changed.db"
    reportlogs.build(log, rows=12, decision_changes=2, criteria_changes=3)
    result = runner.invoke(app, ["audit", "replay", "--log", str(log), "--format", "csv"])
    assert result.exit_code == 1  # some differ
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["id"], r["kind"]) for r in rows] == [("1", "decision"), ("2", "decision"), ("3", "criteria"),
                                                   ("4", "criteria"), ("5", "criteria")]
    assert rows[0]["criteria_changed"] == "6 met->not_met" and rows[0]["now_decision"] == "not_covered"


def test_the_chart_reads_without_colour():
    from covkb.surfaces.report import COLOURS, PATTERNS

    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    # WCAG 2.1 1.4.11: a graphic's parts at least 3:1 against the white they stand on
    for colour in COLOURS.values():
        assert 1.05 / (luminance(colour) + 0.05) >= 3
    # in greyscale: each decision its own pattern, and lightnesses apart
    assert len(set(PATTERNS.values())) == len(PATTERNS)
    levels = sorted(luminance(c) for c in COLOURS.values())
    assert all((b + 0.05) / (a + 0.05) >= 1.3 for a, b in zip(levels, levels[1:]))


def test_the_chart_has_a_description_tied_to_its_table_and_a_legend_beside_it(log):
    tree = parse(report(log))
    svg = tree.find("svg", "chart")
    desc = svg.find("desc")
    assert svg.attrs["aria-describedby"] == desc.attrs["id"]
    assert "Decisions per week" in desc.text() and tree.find("table", "weeks").find("caption").text() == "Decisions per week"
    figure = svg.parent.parent
    assert figure.tag == "figure" and figure.find("p", "legend")
    for rect in svg.find_all("rect"):
        if "data-decision" in rect.attrs:
            assert rect.attrs["fill"] == f"url(#fill-{rect.attrs['data-decision']})"


def test_each_side_of_a_served_comparison_is_logged_as_a_what_if(tmp_path):
    from test_serve import Served

    log = tmp_path / "served.db"
    served = Served("--log", str(log))
    try:
        status, _, answer = served.request("POST", "/v1/compare", json.dumps(case(case_id="SERVED")))
        assert status == 200 and [side["what_if"] for side in answer["versions"]] == [True, True]
        status, _, checked = served.request("POST", "/v1/check", json.dumps(case(case_id="CHECKED")))
        assert status == 200 and "what_if" not in checked
    finally:
        assert served.stop() == 0
    connection = audit.open_read(log)
    try:
        marks = [(row["case_id"], bool(row["what_if"])) for row in audit.rows(connection)]
    finally:
        connection.close()
    assert marks == [("SERVED", True), ("SERVED", True), ("CHECKED", False)]
    tree = parse(report(log))
    assert tree.find("p", "period").text().split()[0] == "1"
    assert "2 what-ifs" in tree.find("p", "what-ifs").text()


def test_the_report_help_states_the_default_limit():
    from covkb.surfaces.report import LIMIT

    result = runner.invoke(app, ["audit", "report", "--help"], env={"COLUMNS": "200"})
    assert f"(default {LIMIT})" in " ".join(result.output.split())
