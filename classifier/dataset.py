"""A labelled collection and its song-level split.

A collection is a directory with one sub-folder per genre; songs may sit in nested
folders and be in any format. Each file is one song. The split is by song (no clip of a
test song is ever trained on) and deterministic for a seed.

Songs of one *source* (a soundtrack, an album, a dataset) share production and often a
composer, so a model can learn the source instead of the genre. The split therefore
stratifies by (genre, source): each source's songs are spread over train, validation and
test in proportion, and per-source test accuracy can be reported. The source of a song is
the ``source`` column of a ``manifest.csv`` at the collection root when there is one, else
the part of the file name before ``--`` (``wesnoth--battle.ogg`` -> ``wesnoth``), else
the song's folder.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({
    ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".alac", ".wav", ".aif",
    ".aiff", ".aifc", ".wv", ".ape", ".mpc", ".wma", ".dsf", ".dff", ".mka", ".webm", ".caf",
    ".au", ".snd", ".spx", ".tta", ".ac3",
})
MANIFEST = "manifest.csv"
SPLITS = ("train", "val", "test")


class DatasetError(Exception):
    """The labelled data cannot train or evaluate a model (missing folder, no genres,
    too few songs); the message says what to fix."""


@dataclass(frozen=True)
class Song:
    path: Path
    genre: str
    source: str


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _manifest_sources(root: Path) -> dict[str, str]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        return {}
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            return {
                str((root / row["path"]).resolve()): row["source"]
                for row in csv.DictReader(fh)
                if row.get("path") and row.get("source")
            }
    except (OSError, KeyError, csv.Error, UnicodeDecodeError) as e:
        log.warning("ignoring unreadable %s: %s", manifest, e)
        return {}


def source_of(path: Path, genre_dir: Path, manifest: dict[str, str]) -> str:
    known = manifest.get(str(path.resolve()))
    if known:
        return known
    if "--" in path.stem:
        return path.stem.split("--", 1)[0]
    rel = path.parent.relative_to(genre_dir)
    return str(rel) if str(rel) != "." else genre_dir.name


def scan(data_dir: str | Path) -> list[Song]:
    """Every audio file under each genre sub-folder (recursively), sorted by path.
    Raises DatasetError when the directory is missing or has no genre with songs."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (want one sub-folder per genre)")
    manifest = _manifest_sources(root)
    songs: list[Song] = []
    for genre_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if genre_dir.name.startswith("."):
            continue
        _check_genre_folder(genre_dir)
        for path in sorted(genre_dir.rglob("*")):
            if path.is_file() and is_audio_name(path):
                songs.append(Song(path, genre_dir.name, source_of(path, genre_dir, manifest)))
    if not songs:
        raise DatasetError(f"{root}: no audio files in genre sub-folders")
    return songs


def _check_genre_folder(genre_dir: Path) -> None:
    """A genre folder's name becomes a label (in model.json, tags, terminals): printable
    text with a letter or digit, at most MAX_LABEL_LENGTH characters (the rule model.json
    is checked by, and genred's genre-name rule)."""
    from classifier.modeljson import MAX_LABEL_LENGTH

    name = genre_dir.name
    if not name.isprintable():
        why = "holds control or invisible characters"
    elif not any(c.isalnum() for c in name):
        why = "has no letter or digit"
    elif len(name.strip()) > MAX_LABEL_LENGTH:
        why = f"is longer than {MAX_LABEL_LENGTH} characters"
    else:
        return
    raise DatasetError(f"genre folder {name!a} in {ascii(str(genre_dir.parent))[1:-1]} "
                       f"{why}: it cannot be a genre name; rename it or move it out")


def from_pairs(pairs: Iterable[tuple[str | Path, str]]) -> list[Song]:
    """Songs from (path, genre) pairs; the source is the song's folder."""
    return [Song(Path(p), g, Path(p).parent.name) for p, g in pairs]


def split(
    songs: list[Song], seed: int, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> dict[str, list[Song]]:
    """Song-level split stratified by (genre, source); deterministic for ``seed``.
    Every stratum keeps at least one training song; one of two songs goes to test."""
    rng = random.Random(seed)
    strata: dict[tuple[str, str], list[Song]] = defaultdict(list)
    for song in sorted(songs, key=lambda s: str(s.path)):
        strata[(song.genre, song.source)].append(song)
    out: dict[str, list[Song]] = {name: [] for name in SPLITS}
    carry = {"val": 0.0, "test": 0.0}
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        n = len(members)
        # Carry the rounding remainder across strata so small sources still add up.
        n_test = _take(n * test_fraction + carry["test"], n - 1)
        carry["test"] += n * test_fraction - n_test
        n_val = _take(n * val_fraction + carry["val"], n - 1 - n_test)
        carry["val"] += n * val_fraction - n_val
        out["test"] += members[:n_test]
        out["val"] += members[n_test : n_test + n_val]
        out["train"] += members[n_test + n_val :]
    return _together(out)


def _together(splits: dict[str, list[Song]]) -> dict[str, list[Song]]:
    """A song listed once per genre (a multi-genre label) stays in one split: the first of
    train, val, test that holds it gets every copy, so no song is both trained on and
    validated or tested with."""
    home: dict[Path, str] = {}
    for name in ("train", "val", "test"):
        for song in splits.get(name, []):
            home.setdefault(song.path, name)
    out: dict[str, list[Song]] = {name: [] for name in splits}
    for name, songs in splits.items():
        for song in songs:
            out[home.get(song.path, name)].append(song)
    return out


def _take(wanted: float, at_most: int) -> int:
    return max(0, min(at_most, int(wanted + 0.5)))


def genre_counts(songs: Iterable[Song]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for song in songs:
        counts[song.genre] += 1
    return dict(sorted(counts.items()))
