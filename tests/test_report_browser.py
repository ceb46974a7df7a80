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
