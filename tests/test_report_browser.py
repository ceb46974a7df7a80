"""Both HTML pages rendered by a real browser (headless Chromium): each draws something."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cases import case
from test_report import cli

ROOT = Path(__file__).parents[1]
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium is not installed (apt-get install chromium)")


def screenshot(page: Path, tmp_path: Path) -> "PIL.Image.Image":  # noqa: F821
    from PIL import Image

    shot = tmp_path / (page.stem + ".png")
    profile = tmp_path / f"profile-{page.stem}"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={profile}", "--window-size=1000,1400", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    return Image.open(shot).convert("L")


def spread(image) -> float:
    """The standard deviation of the grey levels: 0 for a blank page."""
    from PIL import ImageStat

    return ImageStat.Stat(image).stddev[0]


def test_a_blank_page_measures_blank(tmp_path):
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    assert spread(screenshot(page, tmp_path)) < 1


def test_both_pages_draw_in_a_browser(tmp_path):
    page = tmp_path / "determination.html"
    page.write_text(cli("explain", ROOT / "facts" / "not-covered-crcl-45-2024.json", "--format", "html"))
    lines = tmp_path / "in.jsonl"
    lines.write_text("".join(json.dumps(case(case_id=f"C{i}", organ_function_adequate=i % 3 != 0)) + "\n"
                             for i in range(6)))
    log = tmp_path / "log.db"
    cli("batch", lines, "--out", tmp_path / "out.jsonl", "--log", log, "--workers", "1", "--quiet")
    report = tmp_path / "report.html"
    cli("audit", "report", "--log", log, "--out", report)
    for rendered in (page, report):
        image = screenshot(rendered, tmp_path)
        assert image.size == (1000, 1400)
        # Text, rules and coloured badges on white: far from uniform.
        assert spread(image) > 20, rendered.name


# ---------------------------------------------------------------------------
# Every reader: axe-core, a phone, 400% zoom, colour vision, a log of 20,000 rows
# ---------------------------------------------------------------------------
BROWSER_DIR = ROOT / "tests" / "browser"
NODE = shutil.which("node")
# Where the screenshots are kept to be looked at (COVKB_SCREENSHOTS), else the test's own directory.
SHOTS = "COVKB_SCREENSHOTS"
# A 1280 px window, a phone, and a 1280 px window at 400% zoom.
WIDTHS = (1280, 390, 320)


def readers_needed():
    if BROWSER is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    if NODE is None or not (BROWSER_DIR / "node_modules" / "axe-core").is_dir() \
            or not (BROWSER_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.skip("tests/browser/node_modules is absent (cd tests/browser && npm install --legacy-peer-deps)")


def shots_dir(tmp_path: Path) -> Path:
    import os

    chosen = Path(os.environ.get(SHOTS) or tmp_path / "shots")
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def measure(pages: list[dict], tmp_path: Path) -> list[dict]:
    """Each page as Chromium lays it out (tests/browser/pages.mjs)."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"profile": str(tmp_path / "profile"), "pages": pages}))
    done = subprocess.run([NODE, str(BROWSER_DIR / "pages.mjs"), BROWSER, str(job)], cwd=BROWSER_DIR,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def assert_reads(result: dict) -> None:
    where = f"{Path(result['file']).name} at {result['width']} px"
    assert not result["violations"], f"{where}: axe-core: {result['violations']}"
    assert result["scrollWidth"] <= result["width"], f"{where}: scrolls sideways ({result['scrollWidth']} px)"
    assert not result["overflowing"], f"{where}: cells overflow: {result['overflowing'][:5]}"
    assert not result["split"], f"{where}: words split across lines: {result['split'][:10]}"
    levels = result["headings"]
    assert levels[0] == 1 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), f"{where}: {levels}"


def changed_log(tmp_path: Path, rows: int, decision_changes: int, criteria_changes: int, weeks: int) -> Path:
    import reportlogs

    log = tmp_path / f"log-{rows}.db"
    reportlogs.build(log, rows, decision_changes, criteria_changes, alike=rows // 20, weeks=weeks)
    return log


@pytest.mark.slow
def test_every_page_passes_axe_and_reads_on_a_phone_and_at_400_percent_zoom(tmp_path):
    readers_needed()
    shots = shots_dir(tmp_path)
    files = {}
    for name in ("covered-2025", "pending-2025", "not-covered-crcl-45-2024", "not-applicable-before-2024-08-21"):
        files[name] = tmp_path / f"{name}.html"
        files[name].write_text(cli("explain", ROOT / "facts" / f"{name}.json", "--format", "html"))
    log = changed_log(tmp_path, 300, 30, 10, weeks=12)
    what_if = tmp_path / "what-if.json"
    what_if.write_text(json.dumps(case(case_id="WHAT-IF")))
    cli("check", what_if, "--policy-version", "2024-08-21", "--log", log)
    files["report"] = tmp_path / "report.html"
    cli("audit", "report", "--log", log, "--out", files["report"], "--limit", "12")
    pages = [{"file": str(path), "width": width, "shot": str(shots / f"{name}-{width}.png")}
             for name, path in files.items() for width in WIDTHS]
    pages += [{"file": str(files["report"]), "width": width, "at": "#weeks", "height": 700, "vision": vision,
               "shot": str(shots / f"chart-{vision}-{width}.png")}
              for vision in ("achromatopsia", "deuteranopia") for width in (1280, 390)]
    pages.append({"file": str(files["report"]), "width": 1280, "at": "#replayed", "height": 1400,
                  "shot": str(shots / "report-replayed-1280.png")})
    pages.append({"file": str(files["report"]), "width": 390, "at": "#replayed", "height": 1400,
                  "shot": str(shots / "report-replayed-390.png")})
    for result in measure(pages, tmp_path):
        assert_reads(result)
    assert all((shots / f"{name}-{width}.png").stat().st_size > 0 for name in files for width in WIDTHS)


@pytest.mark.slow
def test_a_report_over_20000_rows_with_3000_decision_changes_stays_small(tmp_path, capsys):
    readers_needed()
    log = changed_log(tmp_path, 20_000, 3_000, 466, weeks=40)
    report = tmp_path / "report-20000.html"
    cli("audit", "report", "--log", log, "--out", report)
    size = report.stat().st_size
    assert size < 1_000_000
    (result,) = measure([{"file": str(report), "width": 1280, "at": "#replayed", "height": 1400,
                          "shot": str(shots_dir(tmp_path) / "report-20000-replayed-1280.png")}], tmp_path)
    assert_reads(result)
    # bounded by --limit (50 pages), not by the 3,466 rows decided differently
    assert result["elements"] < 15_000
    with capsys.disabled():
        print(f"\n20,000-row report: {size:,} bytes, {result['elements']:,} elements, "
              f"layout {result['layoutSeconds']:.3f} s, style {result['styleSeconds']:.3f} s")
