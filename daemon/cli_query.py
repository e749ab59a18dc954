"""``genred query`` and ``genred stats``: the catalogue's rows (or albums) as a table, JSON
or CSV, and its counts.

Examples::

    genred query --genre jazz --min-confidence 0.8
    genred query --uncorrected --sort confidence --limit 20 --format json
    genred query --albums --path ~/Music      # one row per album: its genre, who disagrees

Exit status: 0 when the query ran, 1 when the catalogue cannot be opened, 2 for usage
errors (the parser is in daemon/cli_catalogue.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING, Any

from daemon.cli_output import open_engine as _open
from daemon.cli_output import write_json as _write_json
from daemon.config import Config
from daemon.userpaths import shown

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --- query / stats ---------------------------------------------------------------------

def run_query(args: argparse.Namespace, cfg: Config) -> int:
    from storage.query import TrackFilter, query_json, query_tracks

    low, high = args.min_confidence, args.max_confidence
    if low is not None and high is not None and high < low:
        print(f"genred query: error: argument --max-confidence: {high:g} is below "
              f"--min-confidence {low:g}, no track can match", file=sys.stderr)
        return EXIT_USAGE
    genre = cfg.tree.query_names(args.genre, cfg.genre_aliases) if args.genre else None
    flt = TrackFilter(genre=genre, min_confidence=low, max_confidence=high,
                      corrected=args.corrected, status=args.status, path=args.query_path,
                      model=_model_version(args.model_filter), limit=args.limit,
                      sort=args.sort,
                      descending=args.desc, artist=args.artist, album=args.album)
    engine = _open(cfg)
    if engine is None:
        return EXIT_FAILED
    if args.albums:
        return _query_albums(engine, flt, args.format)
    if args.format == "json":
        _write_json(query_json(engine, flt))
        return EXIT_OK
    rows = query_tracks(engine, flt)
    if args.format == "csv":
        _write_csv(rows)
    else:
        _write_table(rows)
    return EXIT_OK


def _model_version(name: str | None) -> str | None:
    """``--model``'s version id: "starter" (or "bundled") is the bundled starter's."""
    if name is None or name.strip().casefold() not in ("starter", "bundled"):
        return name
    from classifier.bundle import read_meta
    from classifier.store import STARTER_DIR

    return read_meta(STARTER_DIR).version


def _query_albums(engine: Engine, flt: Any, fmt: str) -> int:
    from storage.albums import COLUMNS, albums

    rows = albums(engine, flt)
    if fmt == "json":
        _write_json(json.dumps(rows, ensure_ascii=False))
        return EXIT_OK
    if fmt == "csv":
        out = csv.writer(sys.stdout)
        out.writerow(COLUMNS)
        for row in rows:
            values = dict(row, outliers="; ".join(row["outliers"]))
            out.writerow(["" if values[c] is None else shown(str(values[c])) for c in COLUMNS])
        return EXIT_OK
    if not rows:
        print("no tracks match")
        return EXIT_OK
    header = ("ALBUM", "ALBUM ARTIST", "TRACKS", "GENRE", "CONF", "DISAGREE")
    cells = [(shown((r["album"] or r["folder"] or "-")[:48]),
              shown((r["album_artist"] or "-")[:TAG_WIDTH]), str(r["tracks"]),
              (r["genre"] or "-")[:GENRE_WIDTH],
              f"{r['confidence']:.2f}" if r["confidence"] is not None else "-",
              str(r["disagreeing"])) for r in rows]
    widths = [max(len(c[i]) for c in [*cells, header]) for i in range(4)]
    for album, artist, tracks, genre, conf, disagree in (header, *cells):
        print(f"{album:<{widths[0]}}  {artist:<{widths[1]}}  {tracks:>{widths[2]}}  "
              f"{genre:<{widths[3]}}  {conf:>4}  {disagree:>8}")
    flagged = sum(r["disagreeing"] for r in rows)
    print(f"{_plural(len(rows), 'album')}" + (
        f", {_plural(flagged, 'track')} disagreeing with its album (--format json lists "
        "them; the review page ranks them up)" if flagged else ""))
    return EXIT_OK


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _write_csv(rows: list[dict[str, Any]]) -> None:
    """The JSON fields, in the same order; probabilities as one JSON object text (the
    genres differ between models, so they cannot be fixed columns); genres joined with
    "; " ("Rock; Blues", as `genred correct` takes them); null -> empty.
    Lossless: a path goes out as the bytes of the file's name, even where they are not
    UTF-8 (CSV has no escapes; a reader with ``surrogateescape`` gets the same str)."""
    import io

    from storage.query import COLUMNS

    sys.stdout.flush()
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="surrogateescape",
                              newline="", write_through=True)
    out = csv.writer(stream)
    try:
        out.writerow(COLUMNS)
        for row in rows:
            values = dict(row, probabilities=json.dumps(row["probabilities"],
                                                        ensure_ascii=False)
                          if row["probabilities"] is not None else None,
                          genres="; ".join(row["genres"]) if row["genres"] else None)
            out.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
    finally:
        stream.detach()  # leave sys.stdout's buffer open (also after `| head` broke the pipe)


CORRECTED_MARK = "*"
GENRE_WIDTH = 32  # longer genre lists are cut, so one odd label cannot widen every row
TAG_WIDTH = 24  # the same for artist and album names


def _write_table(rows: list[dict[str, Any]]) -> None:
    """PATH, GENRE (the effective ones, main first, CORRECTED_MARK when a label set them),
    PREDICTED and CONF (the model's answer and its confidence), ARTIST (else the album
    artist) and ALBUM from the file's tags, STATUS (with the reason of an error)."""
    if not rows:
        print("no tracks match")
        return
    cells = [_table_cells(r) for r in rows]
    header = ("PATH", "GENRE", "PREDICTED", "CONF", "ARTIST", "ALBUM", "STATUS")
    widths = [max(len(c[i]) for c in [*cells, header]) for i in range(6)]
    for path, genre, predicted, conf, artist, album, status in (header, *cells):
        print(f"{path:<{widths[0]}}  {genre:<{widths[1]}}  {predicted:<{widths[2]}}  "
              f"{conf:>4}  {artist:<{widths[4]}}  {album:<{widths[5]}}  {status}")
    corrected = sum(1 for r in rows if r["corrected_genre"] is not None)
    footer = _plural(len(rows), "track")
    if corrected:
        footer += (f", {corrected} corrected ({CORRECTED_MARK} = genre from a correction "
                   "or an imported tag, not the model)")
    print(footer)


def _table_cells(r: dict[str, Any]) -> tuple[str, str, str, str, str, str, str]:
    def cut(name: str | None, width: int = GENRE_WIDTH) -> str:
        return (name or "-")[:width]

    mark = CORRECTED_MARK if r["corrected_genre"] is not None else ""
    confidence = f"{r['confidence']:.2f}" if r["confidence"] is not None else "-"
    status = f"{r['status']}: {r['error']}" if r["error"] else r["status"]
    genres = "; ".join(r["genres"]) if r.get("genres") else r["genre"]
    artist = r.get("artist") or r.get("album_artist")
    return (shown(r["path"]), cut(genres) + mark, cut(r["predicted_genre"]), confidence,
            shown(cut(artist, TAG_WIDTH)), shown(cut(r.get("album"), TAG_WIDTH)),
            shown(status))


def run_stats(args: argparse.Namespace, cfg: Config) -> int:
    from storage.query import stats

    engine = _open(cfg)
    if engine is None:
        return EXIT_FAILED
    data = stats(engine)
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{_plural(data['tracks'], 'track')}, {data['corrected']} corrected")
    for title, key in (("genre", "genres"), ("status", "status"), ("model", "models"),
                       ("label source", "label_sources")):
        print(f"\nper {title}:")
        for name, count in data[key].items():
            print(f"  {count:7d}  {name}")
    return EXIT_OK
