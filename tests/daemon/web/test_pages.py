"""What the library, models and review pages of a real `genred web` show, on a real
catalogue: the genre chart, tracks by status, errors with their reasons and the search
(the `genred query` filters); the models' images, the waiting labels and the retrain
history with its reasons; the review queue's filters."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import quote

import pytest

from tests.daemon.web.test_browser import CHROMIUM, sync_playwright
from tests.daemon.web.webkit import WebLibrary, request

pytestmark = pytest.mark.slow

LAYOUT = {"Jazzy": [("a.mp3", "Drone"), ("b.ogg", "Pulse")], "Other": [("c.flac", "Chirp")]}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> WebLibrary:
    web = WebLibrary.create(tmp_path_factory.mktemp("web-pages"), seconds=6.0, layout=LAYOUT)
    web.path("Other/broken.mp3").write_bytes(b"no audio in here " * 64)
    for args in (("scan", str(web.path("Other"))),
                 ("correct", str(web.path("Other/c.flac")), "Polka", "--new-genre"),
                 ("retrain", "--now")):  # skipped: Polka waits for 3 songs
        done = web.lib.genred(*args)
        assert done.returncode == 0, (args, done.stderr)
    return web


def page(url: str) -> str:
    reply = request(url)
    assert reply.status == 200, reply.body[:300]
    return reply.body.decode()


def ids(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'<article class="track"[^>]* id="track-(\d+)"', html)}


def test_the_library_shows_genres_statuses_and_errors_with_reasons(
        library: WebLibrary, server: str) -> None:
    html = page(f"{server}/library")
    (broken,) = library.query("--status", "error")
    assert broken["error"] and escape(broken["error"]) in html  # the reason, as text
    errors = html[html.index("<h2>Errors"):]
    assert escape(broken["path"]) in errors and "1 file that could not be read" in errors
    chart = html[html.index('<svg class="chart"'):html.index("</svg>")]
    for genre in {r["genre"] for r in library.query("--status", "ok")}:
        assert f"/library?genre={quote(genre)}" in chart and f">{escape(genre)}</text>" in chart
    assert '<a href="/library?status=error">error</a></td><td class="num">1</td>' in html


def test_the_library_search_takes_the_query_filters(library: WebLibrary, server: str) -> None:
    def paths(params: str) -> list[str]:
        html = page(f"{server}/library?{params}")
        table = html[html.index("<h2>Search"):html.index("<h2>Errors")]
        return re.findall(r'<td class="path">([^<]*)</td>', table)

    assert paths("status=error") == [escape(str(library.path("Other/broken.mp3")))]
    folder = quote(str(library.path("Jazzy")))  # a folder: the tracks under it
    assert paths(f"path={folder}&sort=path") == [
        escape(r["path"]) for r in library.query("--path", str(library.path("Jazzy")),
                                                 "--sort", "path")]
    assert paths("corrected=true") == [escape(str(library.path("Other/c.flac")))]
    bad = request(f"{server}/library?min_confidence=7")
    assert bad.status == 400 and b"min_confidence" in bad.body


def test_the_review_filters_select_tracks(library: WebLibrary, server: str) -> None:
    jazzy = {library.track_id("Jazzy/a.mp3"), library.track_id("Jazzy/b.ogg")}
    everything = ids(page(f"{server}/"))
    assert jazzy <= everything and library.track_id("Other/c.flac") not in everything
    assert ids(page(f"{server}/?folder={quote(str(library.path('Jazzy')))}")) == jazzy
    genre = library.row("Jazzy/a.mp3")["genre"]
    assert ids(page(f"{server}/?genre={quote(genre)}")) == {
        library.track_id(rel) for rel in ("Jazzy/a.mp3", "Jazzy/b.ogg")
        if library.row(rel)["genre"] == genre}
    assert ids(page(f"{server}/?model=no-such-model")) == set()
    api = request(f"{server}/api/review?folder={quote(str(library.path('Jazzy')))}").json()
    assert {r["id"] for r in api["tracks"]} == jazzy


def test_the_models_page_shows_images_waiting_labels_and_the_retrain_history(
        library: WebLibrary, server: str) -> None:
    html = page(f"{server}/models")
    models = request(f"{server}/api/models").json()
    starter = next(v for v in models["versions"] if v["bundled"])
    assert starter["images"]
    for name in starter["images"]:
        src = f'/api/models/{quote(starter["version"])}/{name}'
        assert f'src="{src}"' in html
        assert request(server + src).headers["content-type"] == "image/png"
    waiting = html[html.index("Labels waiting"):html.index("Retrain history")]
    assert escape(str(library.path("Other/c.flac"))) in waiting and "<td>Polka</td>" in waiting
    run = next(r for r in models["runs"] if r["trigger"] == "cli")  # the fixture's
    assert run["decision"] == "skipped" and "waiting" in run["reason"]
    history = html[html.index("Retrain history"):]
    assert escape(run["reason"]) in history and ">skipped</span>" in history


@pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                    reason="Chromium or playwright is not installed (.ci/run installs both)")
def test_retrain_now_on_the_models_page_shows_the_job_and_its_outcome(server: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless"])
        try:
            _retrain_from_the_models_page(browser, server)
        finally:
            browser.close()


def _retrain_from_the_models_page(browser: Any, server: str) -> None:
    context = browser.new_context()
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.set_default_timeout(120_000)
    try:
        tab.goto(server + "/models")
        assert tab.locator("#retrain-panel").is_hidden()
        tab.locator("#retrain-now").click()
        tab.wait_for_selector("#retrain-panel:not([hidden])")
        # Polka has 1 of the 3 songs it needs: the job runs and is skipped, and says why
        tab.wait_for_function("() => document.getElementById('retrain-state').textContent"
                              ".startsWith('skipped')")
        assert "waiting" in tab.locator("#retrain-state").inner_text()
        assert not tab.locator("#retrain-now").is_disabled()  # one run at a time: it ended
        runs = request(f"{server}/api/models").json()["runs"]
        assert runs[0]["trigger"] == "web" and runs[0]["decision"] == "skipped"
        assert problems == []
    finally:
        context.close()
