"""Make the README's screenshots of `genred web` (review and models pages).

    .venv/bin/python docs/screenshots/shoot.py [../shared/corpus/music]

Copies a few songs of the corpus into a temporary library (grouped into "albums", with
title/artist/album tags written on the copies; one song of another genre slipped into an
album so the page shows an outlier), scans them with the bundled starter model, labels a
few, serves `genred web` on a free port and photographs the pages with Debian's Chromium
(Playwright). Everything lives in a temporary folder; the corpus is only read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENRED = Path(sys.executable).with_name("genred")
ALBUMS = {  # album -> [(corpus genre folder, how many songs)]
    "Late Night Blues": [("Blues", 3), ("Jazz", 1)],
    "Blue Note Sessions": [("Jazz", 3)],
    "Heavy Rotation": [("Metal", 2), ("Rock", 2)],
    "Floor Fillers": [("Disco", 2), ("Pop", 2)],
    "Chamber Works": [("Classical", 3)],
}


def build_library(corpus: Path, music: Path) -> None:
    import mutagen

    used: set[Path] = set()
    for album, parts in ALBUMS.items():
        n = 0
        for genre, count in parts:
            songs = sorted(p for p in (corpus / genre).iterdir() if p.suffix in (".flac", ".ogg",
                                                                                  ".mp3"))
            for song in [s for s in songs if s not in used][:count]:
                used.add(song)
                n += 1
                target = music / album / f"{n:02d} {song.stem.split('--')[-1]}{song.suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(song, target)
                audio = mutagen.File(target, easy=True)
                if audio.tags is None:
                    audio.add_tags()
                audio["title"] = f"{genre} excerpt {song.stem.rsplit('.', 1)[-1]}"
                audio["artist"] = "GTZAN excerpts"
                audio["album"] = album
                audio.save()


def main() -> int:
    corpus = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared/corpus/music")
    if not corpus.is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="genred-shots-"))
    env = {**os.environ, "HOME": str(root), "XDG_DATA_HOME": str(root / "data"),
           "XDG_CACHE_HOME": str(root / "cache"), "XDG_CONFIG_HOME": str(root / "config"),
           "GENRED_RETRAIN_MIN_NEW_LABELS": "50"}
    env = {k: v for k, v in env.items() if not k.startswith("GENRED_") or k in (
        "GENRED_RETRAIN_MIN_NEW_LABELS",)}
    music = root / "music"
    build_library(corpus, music)

    def genred(*args: str) -> str:
        return subprocess.run([str(GENRED), *args], env=env, check=True, capture_output=True,
                              text=True).stdout

    genred("scan", str(music))
    chamber = str(music / "Chamber Works") + "/*"
    rows = json.loads(genred("query", "--format", "json", "--path", chamber))
    genred("correct", rows[0]["path"], "Classical")
    server = subprocess.Popen([str(GENRED), "web", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = next(line.split()[-1].rstrip("/") for line in server.stdout
                   if line.startswith("genred web: serving"))
        from urllib.request import Request, urlopen

        urlopen(Request(url + "/api/retrain", method="POST")).read()  # a run in the history
        time.sleep(3)
        shoot(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


def shoot(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--no-sandbox", "--headless",
                                          "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url + "/")
        page.wait_for_selector("article.track")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(HERE / "review.png"))
        page.set_viewport_size({"width": 1280, "height": 1500})
        page.goto(url + "/models")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(HERE / "models.png"))
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
