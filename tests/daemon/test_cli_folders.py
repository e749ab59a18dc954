"""Every command that takes a folder touches exactly the tracks under it: real `genred`
processes on a real library whose folders differ only in case (`Jazz`, `jazz`) or hold
`%`, `_`, `[`, `*` and `\\` in their names, next to folders those would match as patterns."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mutagen
import pytest
from sqlalchemy import Engine

from daemon.reconcile import Reconciler
from daemon.watcher import FileStabilityTracker
from storage import catalogue, tags
from storage.corrections import corrected_genre
from storage.db import open_catalogue
from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")
# Each target, and folders a LIKE/GLOB or case-insensitive or bare-prefix match would add.
TARGETS = ["Jazz", "a%b", "a_b", "a[b]", "a*b", "a\\b"]
DECOYS = ["jazz", "JAZZ", "Jazz0", "Jazz.x", "Jazz Funk", "aXYb", "aXb", "ab", "aZZb",
          "a\\\\b", "a%bc"]


class Lib:
    def __init__(self, root: Path, model: Path) -> None:
        self.root, self.music, self.db = root, root / "music", root / "catalogue.db"
        home = root / "home"
        self.env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                    "XDG_DATA_HOME": str(home / ".local/share"),
                    "XDG_CACHE_HOME": str(home / ".cache"), "GENRED_DB": f"sqlite:///{self.db}",
                    "GENRED_MODEL": str(model), "GENRED_CLIPS_PER_TRACK": "1",
                    "GENRED_WORKERS": "1"}
        self._engine: Engine | None = None

    def genred(self, *args: str | Path) -> str:
        proc = subprocess.run([str(GENRED), *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_catalogue(f"sqlite:///{self.db}")
        return self._engine

    def files(self) -> list[Path]:
        return sorted(p for p in self.music.rglob("*.flac"))

    def under(self, folder: str) -> set[Path]:
        return {p for p in self.files() if p.is_relative_to(self.music / folder)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lib]:
    root = tmp_path_factory.mktemp("folders")
    lib = Lib(root, tiny_bundle(root / "model"))
    for i, folder in enumerate(TARGETS + DECOYS):
        make_track(lib.music / folder / "t.flac", "Drone", 2.0, seed=i)
    make_track(lib.music / "Jazz" / "Live" / "t.flac", "Pulse", 2.0, seed=99)
    lib.genred("scan", lib.music)
    shutil.copytree(lib.music, root / "snapshot", copy_function=shutil.copy2)
    shutil.copy2(lib.db, root / "snapshot.db")
    yield lib


@pytest.fixture
def lib(pristine: Lib) -> Iterator[Lib]:
    """The scanned library, as it was right after the scan (files and catalogue)."""
    yield pristine
    if pristine._engine is not None:
        pristine._engine.dispose()
        pristine._engine = None
    shutil.rmtree(pristine.music)
    shutil.copytree(pristine.root / "snapshot", pristine.music, copy_function=shutil.copy2)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{pristine.db}{suffix}").unlink(missing_ok=True)
    shutil.copy2(pristine.root / "snapshot.db", pristine.db)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrected(lib: Lib) -> set[Path]:
    return {p for p in lib.files() if corrected_genre(lib.engine, p) is not None}


def test_query_path_lists_exactly_the_folder(lib: Lib) -> None:
    import json

    for folder in TARGETS:
        out = lib.genred("query", "--path", lib.music / folder, "--format", "json")
        assert {Path(r["path"]) for r in json.loads(out)} == lib.under(folder), folder


def in_targets(lib: Lib) -> set[Path]:
    return {p for folder in TARGETS for p in lib.under(folder)}


def test_correct_and_uncorrect_take_exactly_the_folder(lib: Lib) -> None:
    done: set[Path] = set()
    for folder in TARGETS:  # `correct` takes one PATH
        lib.genred("correct", lib.music / folder, "Pulse")
        done |= lib.under(folder)
        assert corrected(lib) == done, folder
    csv = lib.root / "all.csv"
    csv.write_text("".join(f'"{p}",Pulse\n' for p in lib.files()))
    lib.genred("correct", "--from-csv", csv)
    assert corrected(lib) == set(lib.files())
    # The verbs that take several folders get every target at once: each decoy is
    # outside all of them, so one run shows a leak into any decoy.
    lib.genred("uncorrect", *(lib.music / folder for folder in TARGETS))
    assert set(lib.files()) - corrected(lib) == in_targets(lib)


def test_tags_write_and_restore_touch_exactly_the_folder(lib: Lib) -> None:
    before = {p: digest(p) for p in lib.files()}
    lib.genred("tags", "write", "--tag-threshold", "0", *(lib.music / f for f in TARGETS))
    assert {p for p in lib.files() if digest(p) != before[p]} == in_targets(lib)
    lib.genred("tags", "write", "--tag-threshold", "0", lib.music)
    assert all(tags.read_genres(p) for p in lib.files())
    lib.genred("tags", "restore", *(lib.music / f for f in TARGETS))
    assert {p for p in lib.files() if not tags.read_genres(p)} == in_targets(lib)


def test_import_tags_takes_exactly_the_folder(lib: Lib) -> None:
    for path in lib.files():
        audio = mutagen.File(path)
        audio["genre"] = "Chirp"
        audio.save()
    lib.genred("import-tags", *(lib.music / f for f in TARGETS))
    assert corrected(lib) == in_targets(lib)


def test_scan_and_rescan_mark_missing_only_inside_the_folder(lib: Lib) -> None:
    gone = [p for d in DECOYS for p in lib.under(d)]
    for path in gone:
        path.unlink()
    out = lib.genred("scan", *(lib.music / f for f in TARGETS))
    assert "missing" not in out, out
    assert all(catalogue.get_track(lib.engine, p).status == "ok"  # type: ignore[union-attr]
               for p in gone)
    tracker = FileStabilityTracker(settle_seconds=1.0)
    for folder in TARGETS:
        counts = Reconciler(lib.engine, [str(lib.music / folder)], tracker).rescan(1.0)
        assert counts["missing"] == 0, folder
    assert all(catalogue.get_track(lib.engine, p).status == "ok"  # type: ignore[union-attr]
               for p in gone)
    lib.genred("scan", lib.music)  # the whole library: now they are missing
    assert all(catalogue.get_track(lib.engine, p).status == "missing"  # type: ignore[union-attr]
               for p in gone)
