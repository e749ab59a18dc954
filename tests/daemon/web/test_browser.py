"""The review page in a real browser: Debian's Chromium driven by Playwright, against a
real `genred web` process on a real catalogue. Skipped where Chromium or Playwright is
absent (`.ci/run` installs both)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.daemon.web.webkit import WebLibrary

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                       "chromium; .ci/run does it)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip "
                       "install -e '.[dev]')"),
]
LAYOUT = {
    "Accept": [("accept.mp3", "Drone")],
    "Keys": [("key.ogg", "Pulse")],
    "Album": [("01.flac", "Chirp"), ("02.flac", "Chirp"), ("03.flac", "Noise")],
    "Play": [("play.mp3", "Noise")],
    "Typed": [("typed.mp3", "Drone")],
    "Tagged": [("tagged.mp3", "Pulse")],
    "Keyed": [("space.mp3", "Chirp"), ("accept.ogg", "Drone")],
}


HOSTILE_TITLE = '<img src=x onerror="window.pwned=1">Blue & Green'


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> WebLibrary:
    import mutagen

    web = WebLibrary.create(tmp_path_factory.mktemp("web-browser"), seconds=40.0,
                            layout=LAYOUT)
    audio = mutagen.File(web.path("Tagged/tagged.mp3"), easy=True)
    if audio.tags is None:
        audio.add_tags()
    audio["title"], audio["artist"], audio["album"] = HOSTILE_TITLE, "Miles", "Kind <of>"
    audio.save()
    return web


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-background-networking",
                  "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.problems = []  # console errors and uncaught exceptions
    tab.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.problems.append(str(e)))
    tab.set_default_timeout(60_000)
    tab.goto(server + "/")
    tab.wait_for_selector("article.track")
    yield tab
    context.close()


def row_of(page: Any, library: WebLibrary, relative: str) -> Any:
    return page.locator(f"#track-{library.track_id(relative)}")


def test_the_pages_load_without_console_errors(page: Any, server: str) -> None:
    assert page.locator("article.track").count() >= 1
    for path in ("/library", "/models", "/"):
        page.goto(server + path)
        page.wait_for_load_state("networkidle")
    assert page.problems == []


def test_the_player_plays_the_clip_the_model_judged(page: Any, library: WebLibrary) -> None:
    row = row_of(page, library, "Play/play.mp3")
    row.locator("button.clip").first.click()
    audio = row.locator("audio")
    page.wait_for_function("a => a.currentTime > 0.5 && !a.paused", arg=audio.element_handle())
    first_clip = library_clip(page, row)
    # clip 1 of a 40 s track starts after the track's opening, where the model listened
    assert audio.evaluate("a => a.currentTime") >= first_clip["start"]
    assert page.problems == []


def library_clip(page: Any, row: Any) -> dict[str, float]:
    import json

    clips: list[dict[str, float]] = json.loads(row.get_attribute("data-clips"))
    assert clips and clips[0]["start"] > 0
    return clips[0]


def test_clicking_accept_records_the_prediction_as_a_label(page: Any,
                                                           library: WebLibrary) -> None:
    row = row_of(page, library, "Accept/accept.mp3")
    predicted = row.get_attribute("data-genre")
    row.locator("button.accept").click()
    page.wait_for_selector(f"#{row.get_attribute('id')}.done")
    label = library.row("Accept/accept.mp3")
    assert label["corrected_genre"] == predicted and label["correction_source"] == "user"


def test_pressing_1_labels_the_selected_track_with_its_top_genre(page: Any,
                                                                  library: WebLibrary) -> None:
    import json

    row = row_of(page, library, "Keys/key.ogg")
    row.locator(".path").click()  # selects the row, as j/k would
    page.wait_for_selector(f"#{row.get_attribute('id')}.current")
    top = json.loads(row.get_attribute("data-top"))[0]
    page.keyboard.press("1")
    page.wait_for_selector(f"#{row.get_attribute('id')}.done")
    assert library.row("Keys/key.ogg")["corrected_genre"] == top


def test_the_album_action_labels_every_track_of_the_folder(page: Any,
                                                           library: WebLibrary) -> None:
    row = row_of(page, library, "Album/03.flac")
    row.locator("select.album-genre").select_option("Chirp")
    button = row.locator("button.album-apply")
    button.click()
    assert "Confirm" in button.inner_text()  # a folder is many tracks: a second click
    button.click()
    for name in ("01.flac", "02.flac", "03.flac"):
        page.wait_for_selector(f"#track-{library.track_id('Album/' + name)}.done")
    rows = library.query("--path", str(library.path("Album")))
    assert len(rows) == 3 and {r["corrected_genre"] for r in rows} == {"Chirp"}


def test_a_typed_unknown_genre_needs_the_new_genre_step(page: Any,
                                                         library: WebLibrary) -> None:
    row = row_of(page, library, "Typed/typed.mp3")
    row.locator("input.new-genre").fill("Sea Shanty")
    row.locator("button.set-typed").click()
    create = row.locator("button.new")
    create.wait_for()
    assert library.row("Typed/typed.mp3")["corrected_genre"] is None
    create.click()
    page.wait_for_selector(f"#{row.get_attribute('id')}.done")
    assert library.row("Typed/typed.mp3")["corrected_genre"] == "Sea Shanty"


def test_tags_and_names_are_shown_as_text_never_as_markup(page: Any,
                                                          library: WebLibrary) -> None:
    row = row_of(page, library, "Tagged/tagged.mp3")
    assert row.locator(".title").inner_text() == HOSTILE_TITLE
    assert "Kind <of>" in row.locator(".meta").inner_text()
    assert row.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_the_keys_move_play_skip_and_accept(page: Any, library: WebLibrary) -> None:
    ids = page.eval_on_selector_all("article.track", "rows => rows.map(r => r.id)")
    row = row_of(page, library, "Keyed/space.mp3")
    me = ids.index(row.get_attribute("id"))
    row.locator(".path").click()
    page.wait_for_selector(f"#{ids[me]}.current")
    # j / k: the next and the previous row (from the last row, k first)
    there, back = ("j", "k") if me + 1 < len(ids) else ("k", "j")
    other = ids[me + 1] if there == "j" else ids[me - 1]
    page.keyboard.press(there)
    page.wait_for_selector(f"#{other}.current")
    assert page.locator("article.track.current").count() == 1
    page.keyboard.press(back)
    page.wait_for_selector(f"#{ids[me]}.current")
    # space: play, and play/pause again
    audio = row.locator("audio").element_handle()
    page.keyboard.press(" ")
    page.wait_for_function("a => !a.paused && a.currentTime > 0.2", arg=audio)
    page.keyboard.press(" ")
    page.wait_for_function("a => a.paused", arg=audio)
    # s: skipped, nothing recorded, the selection moves on
    page.keyboard.press("s")
    page.wait_for_selector(f"#{ids[me]}.skipped")
    if me + 1 < len(ids):  # the last row has nowhere to move on to
        page.wait_for_selector(f"#{ids[me + 1]}.current")
    assert library.row("Keyed/space.mp3")["corrected_genre"] is None
    # a: the selected row's prediction becomes its label
    accept = row_of(page, library, "Keyed/accept.ogg")
    accept.locator(".path").click()
    page.wait_for_selector(f"#{accept.get_attribute('id')}.current")
    predicted = accept.get_attribute("data-genre")
    page.keyboard.press("a")
    page.wait_for_selector(f"#{accept.get_attribute('id')}.done")
    label = library.row("Keyed/accept.ogg")
    assert label["corrected_genre"] == predicted and label["correction_source"] == "user"
    assert page.problems == []
