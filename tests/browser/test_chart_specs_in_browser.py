"""Chart specs drawn by the vendored vega-embed in headless Chromium, with no server: for the
charts the seeded pages cannot show (the Compare page's needs two runs of the same configs).
The pages' charts are checked on the pages themselves (test_trust_in_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.reporting import charts

pytestmark = pytest.mark.browser

VENDOR = Path(__file__).resolve().parents[2] / "webapp" / "static" / "vendor"
LIBRARIES = ("vega-6.4.0.min.js", "vega-lite-6.5.0.min.js", "vega-embed-7.3.0.min.js")


PERCENTILES = [1.0 + 0.01 * i for i in range(20)] + [30.0]  # the 0th, 5th, ..., 100th: a long tail
SPECS = {
    "compare-distributions": lambda: charts.sample_distributions(
        "bert-tiny · cpu", PERCENTILES, [value * 1.1 for value in PERCENTILES], ("run a", "run b")),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_the_chart_draws_without_a_vega_warning(browser, name):
    page = browser.new_page()
    warnings = []
    page.on("console", lambda message: message.type in ("warning", "error") and warnings.append(message.text))
    page.set_content('<div id="chart" style="width: 600px"></div>')
    for library in LIBRARIES:
        page.add_script_tag(path=str(VENDOR / library))
    page.evaluate("spec => vegaEmbed('#chart', spec, {renderer: 'svg'}).then(() => null)", SPECS[name]())
    assert page.locator("#chart svg.marks").count() == 1
    page.close()
    assert warnings == []
