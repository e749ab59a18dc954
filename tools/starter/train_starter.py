"""Train the bundled starter on ../shared/corpus/music with an artist-disjoint hold-out.

    .venv/bin/python tools/starter/train_starter.py ../shared/corpus/music \\
        --out /tmp/starter-backbone [--arch backbone] [--compare classifier/starter]

The split (deterministic for --seed): songs are grouped by *artist cluster* and whole
clusters go to train / validation / test (about 60 / 15 / 25 % of each genre's clusters),
so no artist of a test or validation song is ever trained on. A cluster is:

- a soundtrack or single-composer source (Wesnoth, Nexuiz, Endgame: Singularity,
  Muldjord): the whole source — one composer and one production;
- Panda 4Q (AllMusic), Emotify (Magnatune) and JamendoLyrics songs: the artist named in
  the manifest's ``evidence`` column ("...; Little Walter - Last Night");
- GTZAN clips (no artist given; GTZAN repeats artists in runs of consecutive clips):
  blocks of 10 consecutive clip numbers of one genre folder.

Sources stay mixed across the splits (holding out whole sources would leave several
genres with no training songs), so per-source figures are reported for the test songs.
``--compare BUNDLE``: also evaluates another model (e.g. the current starter) on the very
same test songs.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from classifier import dataset, training
from classifier.dataset import Song
from classifier.features import musicnn_params

WHOLE_SOURCE = ("wesnoth", "nexuiz", "singularity", "muldjord")


def artist_cluster(row: dict[str, str]) -> str:
    name = Path(row["path"]).name
    prefix = name.split("--", 1)[0]
    if prefix in WHOLE_SOURCE:
        return prefix
    if prefix == "gtzan":
        m = re.search(r"\.(\d{5})\.", name)
        block = int(m.group(1)) // 10 if m else 0
        return f"gtzan/{row['genre']}/{block}"
    named = [p for p in row["evidence"].split(";") if " - " in p]  # "...; Artist - Title"
    artist = named[-1].split(" - ")[0].strip().lower() if named else name
    return f"{prefix}/{artist}"


def split(root: Path, seed: int) -> dict[str, list[Song]]:
    rows = {str((root / r["path"]).resolve()): r
            for r in csv.DictReader((root / "manifest.csv").open(encoding="utf-8"))}
    songs = dataset.scan(root)
    clusters: dict[str, list[Song]] = defaultdict(list)
    for s in songs:
        row = rows.get(str(s.path.resolve()))
        clusters[artist_cluster(row) if row else f"file/{s.path.name}"].append(s)
    by_genre: dict[str, list[str]] = defaultdict(list)
    for key, members in sorted(clusters.items()):
        by_genre[members[0].genre].append(key)
    rng = random.Random(seed)
    out: dict[str, list[Song]] = {"train": [], "val": [], "test": []}
    for genre in sorted(by_genre):
        keys = by_genre[genre]
        rng.shuffle(keys)
        n = len(keys)
        n_test = max(1, round(n * 0.25)) if n >= 2 else 0
        n_val = round(n * 0.15) if n - n_test >= 3 else 0
        for i, key in enumerate(keys):
            part = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[part] += clusters[key]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", default="backbone")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--compare", type=Path, action="append", default=[])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--windows", type=int, default=None,
                    help="backbone: windows per song (default: the package's)")
    ap.add_argument("--patches", type=int, default=None,
                    help="backbone: 3 s patches per window (default: the package's)")
    args = ap.parse_args()
    splits = split(args.corpus, args.seed)
    print({k: len(v) for k, v in splits.items()})
    options = {"arch": args.arch, "progress": False, "windows": args.windows}
    if args.patches is not None:
        options["params"] = musicnn_params(args.patches)
    opts = training._options(args.seed, 5, args.epochs, options)
    training._params_for(opts, None)
    summary = {"data_dir": "corpus/music", "genres": dataset.genre_counts(
        s for v in splits.values() for s in v),
        "split": "artist clusters (tools/starter/train_starter.py): no test or validation "
                 "artist is trained on"}
    result = training._run(splits, opts, args.out.absolute(), args.cache, summary, None)
    report = {"new": _short(result.metrics)}
    test = [(s.path, s.genre) for s in splits["test"]]
    for other in args.compare:
        report[str(other)] = _short(training.evaluate(other, test, cache_dir=args.cache))
    print(json.dumps(report, indent=2))
    (args.out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _short(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "mean_recall": m["balanced_accuracy"],
            "ece": m.get("ece"), "n_songs": m["n_songs"],
            "per_genre_recall": {g: v["recall"] for g, v in m["per_genre"].items()
                                 if v["support"]},
            "per_source": m.get("per_source")}


if __name__ == "__main__":
    raise SystemExit(main())
