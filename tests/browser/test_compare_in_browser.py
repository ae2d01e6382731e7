"""The run page's link to the previous run, and a comparison with a result the contender reused,
in Chromium against a server of its own (so no other test's results are there to reuse)."""

from __future__ import annotations

import httpx
import pytest
from browser_helpers import wait_for_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A first-ever run of bert-tiny bs1, then an incremental one of bs1 and bs2 that reuses its bs1."""
    from integration.server import start_server

    folder = tmp_path_factory.mktemp("compare-server")
    with start_server(folder, db_path=folder / "b.duckdb", max_seconds=0.3) as server:
        ids = []
        for batch_sizes in ([1], [1, 2]):
            reply = httpx.post(f"{server.url}/api/benchmark/run", timeout=30, json={
                "models": ["bert-tiny"], "batch_sizes": batch_sizes, "progressive_mode": False,
            })
            assert reply.status_code == 202, reply.text
            ids.append(reply.json()["run_id"])
            assert wait_for_run(server, ids[-1])["status"] == "completed"
        yield server, ids


def test_a_first_run_offers_no_comparison_and_a_later_one_compares_with_the_result_it_reused(open_page, runs):
    server, (first, second) = runs
    page = open_page(server)
    page.goto(f"/runs/{first}")
    page.locator("#compare-previous-slot").wait_for(state="detached")  # asked, and answered with nothing
    assert page.locator("#compare-previous").count() == 0

    page.goto(f"/runs/{second}")
    page.locator("#compare-previous").click()
    page.wait_for_url(f"**/compare?contender={second}")
    summary = page.locator("#compare-summary").inner_text()
    assert "0 matched" in summary and "1 added" in summary and "0 removed" in summary
    assert "1 reused, same measurement" in summary
    reused = page.locator("#compare-reused li")
    assert reused.count() == 1
    assert "bert-tiny · cpu · bs1 · fp32" in reused.inner_text() and first in reused.inner_text()
    assert page.locator("#compare-removed").count() == 0
    assert page.locator("#compare-table").count() == 0
