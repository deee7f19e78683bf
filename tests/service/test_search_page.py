"""The search page (``GET /``) in a real browser: Playwright driving Debian's Chromium, headless, against
``lsr serve`` (the session's server: SciFact BM25 and a tiny inference-free index, with an API key) on a
loopback port. A user's path: type the key and a query, see ten results, open "why" and check its numbers
against the API, page on, and see the API's own message for a bad filter.

Without Playwright or Chromium the test skips, saying what is missing; in CI (``LSR_REQUIRE_BROWSER=1``
or ``LSR_REQUIRE_DATA=1``, set by .ci/run) it fails instead. ``LSR_UPDATE_SCREENSHOT=1`` rewrites
docs/search-page.png from the run.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from pathlib import Path

import pytest
from service_helpers import API_KEY

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LSR_CHROMIUM", "/usr/bin/chromium")
REQUIRED = "1" in (os.environ.get("LSR_REQUIRE_BROWSER"), os.environ.get("LSR_REQUIRE_DATA"))
QUERY = "vitamin D deficiency"


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install playwright)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set LSR_CHROMIUM)"
    return None


MISSING = _browser_missing()
pytestmark = pytest.mark.skipif(bool(MISSING and not REQUIRED), reason=str(MISSING))


@pytest.fixture(scope="module")
def page():
    if MISSING:  # REQUIRED, or the module would have been skipped
        pytest.fail(f"the browser test must run in CI, but {MISSING}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        tab = browser.new_page(viewport={"width": 1100, "height": 1300})
        yield tab
        browser.close()


def _page_hits(page) -> list[tuple[str, float]]:
    hits = page.locator("#results li.hit")
    return [
        (hits.nth(i).get_attribute("data-id"), float(hits.nth(i).get_attribute("data-score")))
        for i in range(hits.count())
    ]


def _api_hits(client, start: int) -> list[tuple[str, float]]:
    body = {"query": QUERY, "index": "bm25", "k": 10, "from": start}
    answer = client.post("/v1/search", json=body)
    assert answer.status_code == 200, answer.text
    return [(h["id"], h["score"]) for h in answer.json()["hits"]]


def _open_page(page, server) -> None:
    page.goto(server["url"] + "/")
    page.fill("#apikey", API_KEY)
    page.dispatch_event("#apikey", "change")  # the page keeps the key and lists the indexes
    page.wait_for_selector("#index option[value='bm25'], #index option:text-is('bm25')", state="attached")
    page.select_option("#index", "bm25")


def test_search_why_and_paging_in_a_browser(page, server, client, tmp_path):
    _open_page(page, server)
    page.fill("#q", QUERY)
    page.click("#search")
    page.wait_for_function("document.querySelectorAll('#results li.hit').length === 10")
    first = _page_hits(page)
    assert first == _api_hits(client, 0)  # the same ids, order and scores as the API
    assert page.locator("#results li.hit").first.locator("mark").count() > 0  # matching terms marked
    assert page.inner_text("#status").startswith("results 1\u201310")

    # "why": each term's query weight x document impact; the contributions sum to the score shown
    hit = page.locator("#results li.hit").nth(0)
    hit.locator("button.why").click()
    panel = hit.locator(".why-panel")
    panel.wait_for()
    rows = panel.locator("tr.term").evaluate_all("rs => rs.map(r => r.dataset.contribution)")
    shown = [float(c) for c in rows]
    doc_id, score = first[0]
    assert len(shown) > 0 and math.isclose(sum(shown), score, rel_tol=1e-5)
    assert f"= {score:.4f}" in panel.inner_text()
    why = client.post("/v1/explain", json={"query": QUERY, "index": "bm25", "ids": [doc_id]})
    assert why.status_code == 200, why.text
    explained = why.json()["docs"][0]
    assert [t["contribution"] for t in explained["terms"]] == shown  # the API's numbers, as shown
    assert math.isclose(explained["score"], score, rel_tol=1e-5)  # and the API's search score
    first_row = panel.locator("tr.term").first.inner_text().split()
    assert first_row[0] == explained["terms"][0]["term"]
    page.screenshot(path=str(tmp_path / "search-page.png"))
    if os.environ.get("LSR_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "search-page.png", REPO / "docs" / "search-page.png")

    # page 2: the API's ranks 11-20, none of page 1's documents
    page.click("#next")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('results 11')")
    second = _page_hits(page)
    assert second == _api_hits(client, 10)
    assert len(second) == 10 and not {d for d, _ in first} & {d for d, _ in second}
    assert "from=10" in page.url  # the page's state is in its URL


def test_bad_input_shows_the_api_message(page, server, client):
    _open_page(page, server)
    page.fill("#q", QUERY)
    page.fill("#filter", '{"term": {"year": 2020}}')
    page.click("#search")
    page.wait_for_selector("#error:not([hidden])")
    body = {"query": QUERY, "index": "bm25", "k": 10, "from": 0, "filter": {"term": {"year": 2020}}}
    body["fields"] = ["title", "text"]
    api = client.post("/v1/search", json=body)
    assert api.status_code == 400
    assert page.inner_text("#error") == f"400: {api.json()['error']['message']}"
    page.fill("#filter", "{not json")
    page.click("#search")
    page.wait_for_function("document.querySelector('#error').textContent.includes('not valid JSON')")
    page.fill("#filter", "")
    page.fill("#q", "   ")
    page.click("#search")
    page.wait_for_function("document.querySelector('#error').textContent === 'type a query'")
