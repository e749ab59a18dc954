"""The JSON API of `genred web`, against a real catalogue of real audio, served by a real
`genred web` process; what the API changes is checked with `genred query`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.daemon.web.webkit import WebLibrary, WebServer, request


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> WebLibrary:
    web = WebLibrary.create(tmp_path_factory.mktemp("web-api"))
    web.path("Mixed/gone.mp3").unlink()  # catalogued, then deleted by the user
    return web


@pytest.fixture(scope="module")
def server(library: WebLibrary) -> Iterator[str]:
    # The retrain test checks the button's wiring, not training: never enough new labels.
    web = WebServer(library.lib, env={**library.env, "GENRED_RETRAIN_MIN_NEW_LABELS": "1000"})
    yield web.url
    assert web.stop() == 0, "".join(web.output)


def test_a_correction_through_the_api_is_what_genred_query_shows(
        library: WebLibrary, server: str) -> None:
    track = library.track_id("Album B/01 b.flac")
    reply = request(f"{server}/api/tracks/{track}/correction", "POST", {"genre": "drone"})
    assert reply.status == 200, reply.body
    assert reply.json()["track"]["corrected_genre"] == "Drone"  # the known spelling
    row = library.row("Album B/01 b.flac")
    assert row["corrected_genre"] == "Drone" and row["correction_source"] == "user"

    reply = request(f"{server}/api/tracks/{track}/correction", "DELETE")
    assert reply.status == 200 and reply.json()["removed"] == 1
    assert library.row("Album B/01 b.flac")["corrected_genre"] is None


def test_a_correction_may_name_several_genres_main_first(library: WebLibrary,
                                                         server: str) -> None:
    track = library.track_id("Mixed/wave.wav")
    url = f"{server}/api/tracks/{track}/correction"
    reply = request(url, "POST", {"genre": "pulse; drone"})
    assert reply.status == 200, reply.body
    assert reply.json()["track"]["genres"] == ["Pulse", "Drone"]
    row = library.row("Mixed/wave.wav")
    assert (row["corrected_genre"], row["genres"]) == ("Pulse", ["Pulse", "Drone"])

    reply = request(url, "POST", {"genre": ["Drone", "Chirp"]})
    assert reply.status == 200
    assert library.row("Mixed/wave.wav")["genres"] == ["Drone", "Chirp"]
    refused = request(url, "POST", {"genre": ["Drone", "Puls"]})
    assert refused.status == 422 and refused.json()["suggestions"] == ["Pulse"]
    assert request(url, "POST", {"genre": ["Drone", 7]}).status == 400
    assert library.row("Mixed/wave.wav")["genres"] == ["Drone", "Chirp"]
    assert request(url, "DELETE").status == 200


def test_title_tags_come_from_the_catalogue_as_scanned(library: WebLibrary,
                                                       server: str) -> None:
    import mutagen

    path = library.path("Album B/03 b.flac")

    def retag(artist: str) -> None:
        audio = mutagen.File(path)
        audio.tags["artist"], audio.tags["album"], audio.tags["tracknumber"] = \
            [artist], ["Album B"], ["3"]
        audio.save()

    retag("Someone")
    assert library.lib.genred("scan", str(path)).returncode == 0  # stored at scan time
    retag("Someone Else")  # the file changes; the catalogue keeps what it read
    track = library.track_id("Album B/03 b.flac")
    tags = request(f"{server}/api/tracks/{track}").json()["tags"]
    assert (tags["artist"], tags["album"], tags["tracknumber"]) == ("Someone", "Album B", 3)
    found = request(f"{server}/api/tracks?artist=someone&tags=true").json()["tracks"]
    assert [(t["id"], t["tags"]["artist"]) for t in found] == [(track, "Someone")]


def test_an_unknown_genre_is_refused_with_a_suggestion_unless_it_is_new(
        library: WebLibrary, server: str) -> None:
    track = library.track_id("Album B/02 b.flac")
    url = f"{server}/api/tracks/{track}/correction"
    reply = request(url, "POST", {"genre": "Puls"})
    assert reply.status == 422
    assert reply.json()["suggestions"] == ["Pulse"] and "Puls" in reply.json()["error"]
    assert library.row("Album B/02 b.flac")["corrected_genre"] is None

    reply = request(url, "POST", {"genre": "SynSwing", "new_genre": True})
    assert reply.status == 200
    assert library.row("Album B/02 b.flac")["corrected_genre"] == "SynSwing"
    genres = request(f"{server}/api/genres").json()["genres"]
    assert {"name": "SynSwing", "in_model": False, "tracks": 1, "predicted": 0,
            "labels": 1} in genres


@pytest.mark.parametrize("body, status", [
    (b"not json", 400), (b'["a list"]', 400), (b'{"genre": ""}', 400),
    (b'{"genre": 7}', 400), (b'{"genre": "Drone", "new_genre": "yes"}', 400),
    (b'{"genre": "Ro\\u001b[31mck", "new_genre": true}', 400),  # genred correct's rule
    (b'{"genre": "' + b"x" * 65 + b'", "new_genre": true}', 400),
])
def test_bad_correction_bodies_are_400(library: WebLibrary, server: str, body: bytes,
                                       status: int) -> None:
    track = library.track_id("Album B/03 b.flac")
    reply = request(f"{server}/api/tracks/{track}/correction", "POST", raw=body)
    assert reply.status == status and "error" in reply.json()


def test_a_body_over_the_limit_is_413(library: WebLibrary, server: str) -> None:
    track = library.track_id("Album B/03 b.flac")
    reply = request(f"{server}/api/tracks/{track}/correction", "POST",
                    {"genre": "Drone", "padding": "x" * 100_000})
    assert reply.status == 413 and "error" in reply.json()
    assert library.row("Album B/03 b.flac")["corrected_genre"] is None


def test_a_range_request_gets_206_and_exactly_those_bytes(library: WebLibrary,
                                                          server: str) -> None:
    path = library.path("Album A/01 one.mp3")
    data = path.read_bytes()
    url = f"{server}/api/tracks/{library.track_id('Album A/01 one.mp3')}/audio"
    reply = request(url, headers={"Range": "bytes=1000-4999"})
    assert reply.status == 206
    assert reply.headers["content-range"] == f"bytes 1000-4999/{len(data)}"
    assert reply.body == data[1000:5000]
    assert reply.headers["content-type"] == "audio/mpeg"
    tail = request(url, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and tail.body == data[-100:]
    whole = request(url)
    assert whole.status == 200 and whole.body == data
    assert whole.headers["accept-ranges"] == "bytes"
    past = request(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status == 416 and past.json()["size"] == len(data)


def test_a_format_browsers_cannot_play_is_sent_as_mp3(library: WebLibrary, server: str,
                                                      tmp_path: Path) -> None:
    from classifier.audio import probe

    url = f"{server}/api/tracks/{library.track_id('Mixed/lossless.alac.m4a')}/audio"
    whole = request(url)
    assert whole.status == 200 and whole.headers["content-type"] == "audio/mpeg"
    out = tmp_path / "sent.mp3"
    out.write_bytes(whole.body)
    info = probe(out)
    assert info.codec == "mp3" and abs(info.duration - 12.0) < 0.5
    part = request(url, headers={"Range": "bytes=0-99"})  # the copy seeks like a file
    assert part.status == 206 and part.body == whole.body[:100]


def test_only_catalogued_files_are_served(library: WebLibrary, server: str) -> None:
    assert request(f"{server}/api/tracks/99999/audio").status == 404
    assert request(f"{server}/api/tracks/99999").status == 404
    gone = request(f"{server}/api/tracks/{library.track_id('Mixed/gone.mp3')}/audio")
    assert gone.status == 404 and "gone" in gone.json()["error"]
    for probe_url in ("/api/tracks/audio?path=/etc/passwd", "/static/../../../etc/passwd",
                      "/static/%2e%2e/%2e%2e/etc/passwd", "/api/models/..%2F..%2Fetc/passwd",
                      f"/api/models/tiny-v1/{'model.safetensors'}"):
        reply = request(server + probe_url)
        assert reply.status == 404, probe_url
        assert b"root:" not in reply.body


def test_tracks_take_the_query_filters(library: WebLibrary, server: str) -> None:
    everything = request(f"{server}/api/tracks?limit=1000").json()
    assert everything["total"] == 11 and len(everything["tracks"]) == 11
    assert all("id" in r and "probabilities" in r for r in everything["tracks"])
    cli = library.query("--path", str(library.path("Album A")), "--sort", "confidence")
    folder = quote(str(library.path("Album A")))
    api = request(f"{server}/api/tracks?path={folder}&sort=confidence")
    assert len(cli) == 4
    assert [r["path"] for r in api.json()["tracks"]] == [r["path"] for r in cli]
    page = request(f"{server}/api/tracks?limit=3&offset=3").json()
    assert [r["path"] for r in page["tracks"]] == \
        [r["path"] for r in everything["tracks"][3:6]] and page["total"] == 11
    for bad in ("min_confidence=2", "sort=bogus", "status=odd", "limit=-1", "corrected=maybe",
                "min_confidence=0.8&max_confidence=0.2"):
        reply = request(f"{server}/api/tracks?{bad}")
        assert reply.status == 400 and "error" in reply.json(), bad


def test_a_track_shows_its_clip_windows_runner_up_and_tags(library: WebLibrary,
                                                           server: str) -> None:
    track = request(f"{server}/api/tracks/{library.track_id('Album A/01 one.mp3')}").json()
    # the tiny model listens to 5 s clips, 3 per track (the config the scan and the server
    # share): the windows are the ones the scan decoded
    from classifier.audio import clip_starts

    assert [c["start"] for c in track["clips"]] == clip_starts(12.0, 3, 5.0)
    assert all(c["end"] - c["start"] == pytest.approx(5.0) for c in track["clips"])
    ranked = [r["probability"] for r in track["ranked"]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 4
    assert track["runner_up"]["genre"] == track["ranked"][1]["genre"]
    assert set(track["tags"]) == {"title", "artist", "album", "albumartist", "tracknumber",
                                  "year"}


def test_the_album_action_labels_every_track_of_the_folder(library: WebLibrary,
                                                           server: str) -> None:
    track = library.track_id("Album A/04 odd.mp3")
    reply = request(f"{server}/api/tracks/{track}/album-correction", "POST",
                    {"genre": "Drone"})
    assert reply.status == 200 and len(reply.json()["tracks"]) == 4
    rows = library.query("--path", str(library.path("Album A")))
    assert len(rows) == 4 and {r["corrected_genre"] for r in rows} == {"Drone"}
    review = request(f"{server}/api/review?limit=200").json()
    assert not any("Album A" in r["path"] for r in review["tracks"])


def test_models_status_and_genres(library: WebLibrary, server: str) -> None:
    models = request(f"{server}/api/models").json()
    tiny = next(v for v in models["versions"] if v["version"] == "tiny-v1")
    assert tiny["active"] and tiny["predicted_tracks"] == 11
    status = request(f"{server}/api/status").json()
    assert status["active_model"]["version"] == "tiny-v1" and status["queue"] == 0
    names = {g["name"] for g in request(f"{server}/api/genres").json()["genres"]}
    assert {"Drone", "Pulse", "Chirp", "Noise"} <= names


def test_retrain_runs_one_at_a_time(library: WebLibrary, server: str) -> None:
    import fcntl
    import sqlite3

    from tests.daemon.daemon_helpers import wait_for

    store = library.lib.store
    with (store / ".retrain.lock").open("a") as lock, \
            sqlite3.connect(library.lib.db, timeout=30) as conn:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as `genred retrain --now` in another process
        conn.execute("INSERT INTO training_runs (started_at, trigger, n_labels, decision, "
                     "metrics) VALUES (datetime('now'), 'cli', 0, 'running', '{}')")
        conn.commit()
        busy = request(f"{server}/api/retrain", "POST")
        assert busy.status == 409 and "already running" in busy.json()["error"]
        fcntl.flock(lock, fcntl.LOCK_UN)  # that process died: its run is "interrupted"
    started = request(f"{server}/api/retrain", "POST")
    assert started.status == 202 and started.json()["state"] == "running"
    job = wait_for(lambda: (j := request(f"{server}/api/retrain").json())["state"] ==
                   "finished" and j, 300, "the retrain job to finish")
    assert job["outcome"]["decision"] == "skipped"
    assert "retrain.min_new_labels" in job["outcome"]["reason"]
    runs = request(f"{server}/api/models").json()["runs"]
    assert runs[0]["trigger"] == "web" and runs[0]["decision"] == job["outcome"]["decision"]
    assert runs[1]["decision"] == "failed" and "interrupted" in runs[1]["reason"]
    assert json.dumps(job)  # progress is plain JSON


def test_activating_a_model_warns_what_it_lacks(library: WebLibrary, server: str) -> None:
    models = request(f"{server}/api/models").json()["versions"]
    starter = next(v for v in models if v["bundled"])
    used = {g["name"] for g in request(f"{server}/api/genres").json()["genres"]
            if g["predicted"] or g["labels"]}
    assert starter["lacks"] == sorted(used - set(starter["labels"]), key=str.lower)
    assert request(f"{server}/api/models/{starter['version']}/confusion.png").headers[
        "content-type"] == "image/png"
    reply = request(f"{server}/api/models/{starter['version']}/activate", "POST")
    assert reply.status == 200, reply.body
    assert any("lacks genres your catalogue uses" in w for w in reply.json()["warnings"])
    shown = library.lib.genred("models", "list", "--format", "json")
    active = [m["version"] for m in json.loads(shown.stdout) if m["active"]]
    assert active == [starter["version"]]
    assert request(f"{server}/api/models/no-such-version/activate", "POST").status == 404
    back = request(f"{server}/api/models/tiny-v1/activate", "POST")
    assert back.status == 200 and back.json()["active"] == "tiny-v1"
