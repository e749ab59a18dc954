"""Title, artist, album, album artist, track number and year: read from the tags when a
file is classified, stored in the catalogue, shown and filtered by `genred query`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mutagen

from storage.titles import read_titles
from tests.audiogen import make_track
from tests.daemon.test_cli_catalogue import env, genred, model_dir, query

__all__ = ["env", "model_dir"]  # fixtures


def tagged(path: Path, **values: str) -> Path:
    make_track(path, "Drone", 3.0, seed=len(path.name))
    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    for key, value in values.items():
        audio.tags[key] = value
    audio.save()
    return path


def test_titles_are_read_from_every_tag_dialect(tmp_path: Path) -> None:
    for ext in ("mp3", "flac", "ogg", "m4a"):
        song = tagged(tmp_path / f"s.{ext}", title="So What", artist="Miles Davis",
                      album="Kind of Blue", albumartist="Miles Davis Sextet",
                      tracknumber="1/5", date="1959-08-17")
        got = read_titles(song)
        assert (got.title, got.artist, got.album, got.albumartist, got.tracknumber,
                got.year) == ("So What", "Miles Davis", "Kind of Blue", "Miles Davis Sextet",
                              1, 1959), ext
    bare = make_track(tmp_path / "bare.wav", "Drone", 1.0)
    assert read_titles(bare).columns() == dict.fromkeys(
        ("title", "artist", "album", "album_artist", "track_number", "year"))
    junk = tagged(tmp_path / "junk.flac", tracknumber="B-side", date="unknown")
    assert (read_titles(junk).tracknumber, read_titles(junk).year) == (None, None)


def test_scan_stores_the_tags_and_query_filters_and_shows_them(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    tagged(lib / "kob" / "1.mp3", title="So What", artist="Miles Davis",
           album="Kind of Blue", tracknumber="1", date="1959")
    tagged(lib / "kob" / "2.flac", title="Freddie Freeloader", artist="Miles Davis",
           album="Kind of Blue", tracknumber="2/5", date="1959-03-02")
    tagged(lib / "other" / "3.ogg", title="Naima", artist="John Coltrane",
           albumartist="Miles Davis", album="Giant Steps")
    make_track(lib / "untagged.wav", "Pulse", 3.0)
    genred(env, "scan", lib)

    rows = {Path(str(r["path"])).name: r for r in query(env)}
    assert {k: rows["2.flac"][k] for k in ("title", "artist", "album", "album_artist",
                                           "track_number", "year")} == {
        "title": "Freddie Freeloader", "artist": "Miles Davis", "album": "Kind of Blue",
        "album_artist": None, "track_number": 2, "year": 1959}
    assert rows["untagged.wav"]["title"] is None and rows["untagged.wav"]["year"] is None

    by_artist = sorted(Path(str(r["path"])).name for r in query(env, "--artist", "miles davis"))
    assert by_artist == ["1.mp3", "2.flac", "3.ogg"]  # 3.ogg by its album artist
    assert [Path(str(r["path"])).name for r in query(env, "--album", "KIND OF BLUE",
                                                     "--sort", "path")] == ["1.mp3", "2.flac"]
    assert query(env, "--artist", "Miles") == []  # whole names, not parts
    csv_rows = list(csv.DictReader(io.StringIO(
        genred(env, "query", "--album", "Giant Steps", "--format", "csv").stdout)))
    assert [(r["title"], r["artist"], r["track_number"]) for r in csv_rows] == [
        ("Naima", "John Coltrane", "")]
    table = genred(env, "query", "--sort", "artist").stdout.splitlines()
    assert "ARTIST" in table[0] and "ALBUM" in table[0]
    assert "John Coltrane" in table[1] and "Giant Steps" in table[1]
    assert "Miles Davis" in table[2] and "Kind of Blue" in table[2]
    albums = {a["album"]: a for a in query(env, "--albums")}
    assert set(albums) == {"Kind of Blue", "Giant Steps", None}
    assert albums["Kind of Blue"]["tracks"] == 2 and albums["Kind of Blue"]["genre"]
    assert albums[None]["folder"] == str(lib)  # untagged: by its folder
    lines = genred(env, "query", "--albums").stdout.splitlines()
    assert lines[0].split()[:3] == ["ALBUM", "ALBUM", "ARTIST"] and len(lines) == 5
    assert lines[-1].startswith("3 albums")
