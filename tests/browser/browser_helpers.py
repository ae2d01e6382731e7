"""Constants and helpers the browser tests share with their conftest."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
AXE = Path(__file__).resolve().parents[2] / "webapp" / "static" / "vendor" / "axe-core-4.14.1.min.js"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
TINY_MODELS = ["bert-tiny", "gpt2-tiny"]
RUN_TIMEOUT_S = 180


def wait_for_run(server, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()
        if status["status"] in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish within {RUN_TIMEOUT_S}s:\n{server.output()[-3000:]}")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def warnings_while_charts_draw(page, url: str) -> list[str]:
    """The console's warnings and errors while ``url`` draws its charts (there must be one).
    Vega-Lite logs a spec it had to correct (a dropped encoding, a sort it gave up on) as a
    warning: each one is a chart drawn otherwise than its spec says."""
    warnings = []
    page.on("console", lambda message: message.type in ("warning", "error") and warnings.append(message.text))
    page.goto(url)
    charts = page.locator("[data-vega-spec], #throughput-chart")  # #throughput-chart: the HTML report's
    assert charts.count() >= 1, f"{url} draws no chart"
    for chart in charts.all():
        chart.locator("svg.marks").first.wait_for()
    return warnings


def serious_axe_violations(page) -> list[dict]:
    """Runs the vendored axe-core in the page; returns its serious and critical violations."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """() => axe.run(document, {resultTypes: ["violations"]}).then(result => result.violations.map(v => ({
               id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(node => node.target.join(" "))})))"""
    )
    return [violation for violation in found if violation["impact"] in ("serious", "critical")]


def assert_fits_a_phone_and_is_accessible(open_page, server, url: str, name: str) -> None:
    """At phone and laptop width, once every chart has drawn: nothing is wider than the phone (wide
    tables scroll inside their own region), and axe finds no serious violation."""
    for viewport in (PHONE, LAPTOP):
        page = open_page(server, viewport)
        page.goto(url)
        for chart in page.locator("[data-vega-spec]").all():
            chart.locator("svg.marks").first.wait_for()
        page.wait_for_function("[...document.querySelectorAll('[data-vega-spec]')].every(c => c.dataset.rendered)")
        if viewport is PHONE:
            widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
            assert widths[0] <= widths[1], f"{url} is {widths[0]}px wide on a {widths[1]}px phone"
            screenshot(page, f"{name}-phone-390")
        serious = serious_axe_violations(page)
        assert serious == [], f"{url} at {viewport['width']}px: {serious}"
