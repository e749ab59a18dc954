"""Catalogue: a 100,000-track catalogue built through the storage layer (bulk insert),
then `genred query --genre X --format json` — query time inside (the storage function the
command calls) and total command time separately — and `genred --help` start-up, with
whether it imports torch.

    python benchmarks/bench_query.py [--tracks 100000] [--quick]

Target (issue 5): query time <= 100 ms. The catalogue looks like a real one: 11 genres
with a skewed spread, a current prediction per track plus an older one for a fifth of
them (history), corrections on 2%, 1% errors. The genre queried holds about 9% of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common

GENRES = ("Rock", "Pop", "Electronic", "Jazz", "Classical", "Rap", "Metal", "Country",
          "Blues", "Reggae", "Disco")
WEIGHTS = (0.22, 0.18, 0.14, 0.09, 0.09, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02)
QUERY_GENRE = "Jazz"
FORMATS = ("mp3", "flac", "mp4/aac", "ogg/vorbis")
HEAVY = ("torch", "librosa", "sqlalchemy", "numpy", "av", "scipy", "numba", "alembic")


def _rows(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                          list[dict[str, Any]]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    genre_idx = rng.choice(len(GENRES), size=n, p=WEIGHTS)
    tracks, predictions, corrections = [], [], []
    for i in range(n):
        error = i % 100 == 99
        tracks.append({
            "id": i + 1, "path": f"/srv/music/Artist {i // 120:04d}/Album {i // 12:05d}/"
                                 f"{i % 12 + 1:02d} Track {i}.{FORMATS[i % 4].split('/')[0]}",
            "size": int(rng.integers(2_000_000, 60_000_000)),
            "mtime": 1.7e9 + i, "fingerprint": f"{i:064x}",
            "duration": float(rng.uniform(120, 420)), "format": FORMATS[i % 4],
            "status": "error" if error else "ok",
            "error": "decode failed: invalid data found when processing input" if error else None,
        })
        if error:
            continue
        probs = rng.dirichlet(np.ones(len(GENRES)) * 0.3)
        probs[genre_idx[i]] += 1.0
        probs /= probs.sum()
        predictions.append({"track_id": i + 1, "model_version": "bench-v2",
                            "genre": GENRES[genre_idx[i]], "confidence": float(probs.max()),
                            "probabilities": dict(zip(GENRES, map(float, probs), strict=True)),
                            "current": True})
        if i % 5 == 0:
            predictions.append({**predictions[-1], "model_version": "bench-v1",
                                "current": False})
        if i % 50 == 7:
            corrections.append({"track_id": i + 1, "genre": GENRES[(genre_idx[i] + 3) % 11],
                                "source": "user", "active": True})
    return tracks, predictions, corrections


def build_catalogue(url: str, n: int) -> float:
    """Create the catalogue with the storage layer and bulk-insert ``n`` tracks; seconds."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from storage.catalogue import register_model
    from storage.db import open_catalogue
    from storage.schema import Correction, Prediction, Track

    start = time.perf_counter()
    engine = open_catalogue(url)
    register_model(engine, "bench-v1", "/nonexistent/v1", list(GENRES), active=False)
    register_model(engine, "bench-v2", "/nonexistent/v2", list(GENRES), active=True)
    tracks, predictions, corrections = _rows(n)
    with Session(engine) as s, s.begin():
        for table, rows in ((Track, tracks), (Prediction, predictions),
                            (Correction, corrections)):
            for i in range(0, len(rows), 20_000):
                s.execute(insert(table), rows[i:i + 20_000])
    engine.dispose()
    return time.perf_counter() - start


def time_query_inside(url: str, repeats: int) -> tuple[float, float, int]:
    """(first call ms, median ms of the next ``repeats``, rows) of the storage function
    behind `genred query --genre X --format json`."""
    from storage.db import open_catalogue
    from storage.genres import normalise
    from storage.query import TrackFilter, query_json

    engine = open_catalogue(url)
    flt = TrackFilter(genre=(QUERY_GENRE, normalise(QUERY_GENRE)))  # as the command builds it
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        text = query_json(engine, flt)
        times.append(1000 * (time.perf_counter() - start))
    engine.dispose()
    return times[0], common.median(times[1:]), len(json.loads(text))


def time_command(args: list[str], env: dict[str, str], repeats: int) -> tuple[float, str]:
    """Median wall ms of `genred ARGS`, and the last output."""
    times, out = [], ""
    for _ in range(repeats):
        run = common.run_genred(args, env)
        times.append(1000 * run.seconds)
        out = run.stdout
    return common.median(times), out


def imported_modules(args: list[str], env: dict[str, str]) -> tuple[set[str], list[str]]:
    """Top-level packages `genred ARGS` imports (python -X importtime), and the five slowest
    as 'name ms' notes."""
    code = "import sys; from daemon.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], env=env,
                          capture_output=True, text=True, timeout=300)
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if not parts[1].isdigit():
            continue
        name = parts[2].split(".")[0]
        cumulative[name] = max(cumulative.get(name, 0), int(parts[1]))
    slowest = sorted(cumulative.items(), key=lambda kv: -kv[1])[:5]
    return set(cumulative), [f"{k} {v / 1000:.0f} ms" for k, v in slowest]


def _report_startup(report: common.Report, env: dict[str, str], repeats: int) -> None:
    help_ms, _ = time_command(["--help"], env, repeats)
    report.result("help_command", help_ms, "ms")
    mods, slowest = imported_modules(["--help"], env)
    report.result("help_imports_torch", "torch" in mods, "", target="False")
    report.note(f"`genred --help` imports heavy: {sorted(mods & set(HEAVY)) or 'none'}")
    mods, slowest = imported_modules(["query", "--genre", QUERY_GENRE, "--format", "json"], env)
    report.result("query_imports_torch", "torch" in mods, "", target="False")
    report.note(f"`genred query` imports heavy: {sorted(mods & set(HEAVY))}; "
                f"slowest: {', '.join(slowest)}")


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=100_000)
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    report = common.Report("query", {"tracks": args.tracks, "genre": QUERY_GENRE,
                                     "repeats": repeats, "quick": args.quick})
    report.header()
    with common.Workdir("query", args.keep) as work:
        env = common.genred_env(work, args.model, args.env)
        url = env["GENRED_DB"]
        report.result("build_catalogue", build_catalogue(url, args.tracks),
                      "s (setup: migrations + bulk insert)")
        first, warm, rows = time_query_inside(url, repeats)
        report.result("query_rows", rows, f"of {args.tracks} tracks")
        report.result("query_time_first", first, "ms")
        report.result("query_time", warm, "ms (median)", target="<= 100 ms")
        total, out = time_command(["query", "--genre", QUERY_GENRE, "--format", "json"], env,
                                  repeats)
        if len(json.loads(out)) != rows:
            raise common.BenchError("`genred query` returned another number of rows than "
                                    "the storage function")
        report.result("query_command_total", total, "ms (median wall, start-up included)")
        _report_startup(report, env, repeats)
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
