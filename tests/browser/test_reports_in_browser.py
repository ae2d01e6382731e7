"""A run's report files in headless Chromium, as the Reports page's links open them: axe-core finds
no serious violation in report.html, and neither file makes the browser log an error (the
favicon it asks for included).

One server for the module (conftest's ``seeded_server``), on the database tests/browser/seeded.py
writes, whose results folder holds each run's reports. Every test fails if the page logged a JS
error or a failed request (the ``open_page`` fixture).
"""

from __future__ import annotations

import pytest
from browser_helpers import LAPTOP, PHONE, serious_axe_violations

pytestmark = pytest.mark.browser

REPORT = "/api/benchmark/reports/seeded-int8/{}"


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["phone", "laptop"])
def test_the_html_report_has_no_serious_accessibility_violation(open_page, seeded_server, viewport):
    """Its wide tables scroll sideways in a region the keyboard can reach and that says what it holds."""
    page = open_page(seeded_server, viewport)
    page.goto(REPORT.format("report.html"))
    page.locator("#throughput-chart svg").first.wait_for()
    assert serious_axe_violations(page) == []
    regions = page.locator(".table-wrap")
    assert regions.count() >= 1
    for region in regions.all():
        assert (region.get_attribute("role"), region.get_attribute("tabindex")) == ("region", "0")
        assert region.get_attribute("aria-label").endswith("(table, scrolls sideways)")


@pytest.mark.parametrize("name", ["report.md", "report.html"])
def test_opening_a_report_file_logs_no_error(open_page, seeded_server, console_errors, name):
    """A text file has no <link rel=icon>, so the browser asks for /favicon.ico, which was a 404
    (Playwright does not see that request: the console's error tells of it)."""
    page = open_page(seeded_server)
    page.goto(REPORT.format(name))
    page.wait_for_load_state("networkidle")
    assert list(console_errors) == []
