"""Does album voting (config ``album_genres``) raise accuracy on real albums? Measured on
the bundled starter's held-out songs (the artist-disjoint split of train_starter.py).

    .venv/bin/python tools/starter/album_vote.py ../shared/corpus/music \\
        [--model classifier/starter] [--seed 0] [--margin 0.3]

Albums: the corpus's files carry no album tags, and its folders are genre folders (grouping
by folder, genred's fallback for untagged files, would hand every track its genre's
majority: a leak, not a measurement). The real albums are taken from the manifest instead:
each Emotify artist's excerpts (Magnatune releases, one album per artist here) and each
single-production soundtrack (Wesnoth, Nexuiz, Endgame: Singularity, Muldjord). Other songs
(GTZAN clips, AllMusic previews, JamendoLyrics) are albums of one and keep their own answer.

Each held-out song is classified by the model as ``genred scan`` would; the album's genre
and who follows it come from ``storage.albums`` (``album_of``, ``follows_album``), the very
rule the tag writer applies. Printed: accuracy and mean per-genre recall without and with
voting, over all held-out songs and over those in albums of two or more, the songs voting
turned right or wrong, and how many flagged outliers were really wrong.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_starter import WHOLE_SOURCE, artist_cluster, split

from classifier.predict import Classifier
from storage.albums import album_of, follows_album

ALBUM_SOURCES = ("emotify", *WHOLE_SOURCE)


def album_name(row: dict[str, str] | None, path: Path) -> str:
    """The real album a corpus song belongs to, or the file itself (an album of one)."""
    if row is not None and Path(row["path"]).name.split("--", 1)[0] in ALBUM_SOURCES:
        return artist_cluster(row)
    return f"single/{path.name}"


def scores(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    by_genre: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_genre[r["truth"]].append(r[key] == r["truth"])
    hits = [h for v in by_genre.values() for h in v]
    return {"songs": len(hits), "accuracy": round(sum(hits) / max(1, len(hits)), 3),
            "mean_recall": round(sum(sum(v) / len(v) for v in by_genre.values())
                                 / max(1, len(by_genre)), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--model", type=Path, default=Path("classifier/starter"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin", type=float, default=0.3)
    args = ap.parse_args()
    manifest = {str((args.corpus / r["path"]).resolve()): r for r in
                csv.DictReader((args.corpus / "manifest.csv").open(encoding="utf-8"))}
    clf = Classifier.load(args.model)
    rows: list[dict[str, Any]] = []
    for song in split(args.corpus, args.seed)["test"]:
        p = clf.classify(song.path)
        rows.append({"path": str(song.path), "truth": song.genre, "genre": p.genre,
                     "confidence": p.confidence, "probabilities": p.probabilities,
                     "album": album_name(manifest.get(str(song.path.resolve())), song.path)})
    albums: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        albums[r["album"]].append(r)
    flagged = wrong_flagged = 0
    for members in albums.values():
        album = album_of(members)
        for r in members:
            r["voted"] = album["genre"] if follows_album(r, album, args.margin) else r["genre"]
            if str(r["path"]) in album["outliers"]:
                flagged += 1
                wrong_flagged += r["genre"] != r["truth"]
    in_albums = [r for r in rows if len(albums[r["album"]]) >= 2]
    report = {
        "model": str(args.model), "margin": args.margin,
        "albums_of_two_or_more": sum(1 for m in albums.values() if len(m) >= 2),
        "all_songs": {"own": scores(rows, "genre"), "album_vote": scores(rows, "voted")},
        "songs_in_albums": {"own": scores(in_albums, "genre"),
                            "album_vote": scores(in_albums, "voted")},
        "turned_right": sum(r["genre"] != r["truth"] == r["voted"] for r in rows),
        "turned_wrong": sum(r["genre"] == r["truth"] != r["voted"] for r in rows),
        "outliers_flagged": flagged, "flagged_and_wrong": wrong_flagged,
        "per_album": {name: {"songs": len(m), "truth": m[0]["truth"],
                             "own_right": sum(r["genre"] == r["truth"] for r in m),
                             "voted_right": sum(r["voted"] == r["truth"] for r in m)}
                      for name, m in sorted(albums.items()) if len(m) >= 2},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
