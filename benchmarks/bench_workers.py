"""Shared-queue throughput: tracks/s of 1 and 2 `genred worker` processes on one PostgreSQL
catalogue, next to one `genred scan` (SQLite) on the same files; and the queue's own claim
rate (8 concurrent claimers on 100,000 pending rows, no audio).

    python benchmarks/bench_workers.py [--tracks 100] [--claim-rows 100000] [--quick]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

Each measurement gets a database of its own on the server (created and dropped here). The
worker figures run from the workers' start (model loading included) until every track is
recorded. The queue figure is tracks claimed and recorded per second (``workqueue.claim`` of a
batch, then ``workqueue.finish`` of each with a fixed prediction), summed over the
claimers: what one catalogue serves before the queue, not the audio, is the bottleneck.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, inputs

DEFAULT_PG = os.environ.get("GENRED_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Database:
    """A fresh database on the server, dropped on exit."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"genred_bench_{uuid.uuid4().hex[:10]}"
        self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def __enter__(self) -> str:
        try:
            self._admin(f'CREATE DATABASE "{self.name}"')
        except Exception as e:  # no server, no driver: say so in one line
            raise common.BenchError(f"no PostgreSQL at {self.admin_url}: {e}") from e
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _queue(url: str, paths: list[Path]) -> None:
    from storage import catalogue
    from storage.db import open_catalogue

    engine = open_catalogue(url)
    for path in paths:
        size, mtime = catalogue.file_stat(path)
        catalogue.mark_pending(engine, path, size, mtime)
    engine.dispose()


def _recorded(url: str) -> int:
    from sqlalchemy import text

    from storage.db import create

    engine = create(url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT count(*) FROM tracks WHERE status <> 'pending'"))
                .scalar() or 0)
    engine.dispose()
    return n


def workers_rate(url: str, paths: list[Path], n_workers: int, env: dict[str, str],
                 timeout: float) -> float:
    """Tracks/s of ``n_workers`` `genred worker` processes draining a queue of ``paths``."""
    _queue(url, paths)
    start = time.perf_counter()
    procs = [subprocess.Popen([common.genred_exe(), "--db", url, "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(n_workers)]
    try:
        while _recorded(url) < len(paths):
            if time.perf_counter() - start > timeout:
                raise common.BenchError(f"{n_workers} worker(s) did not drain the queue in "
                                        f"{timeout:.0f} s")
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                tail = (dead[0].stderr.read() if dead[0].stderr else "")[-300:]
                raise common.BenchError(f"a worker exited {dead[0].returncode}: {tail}")
            time.sleep(0.1)
        return len(paths) / (time.perf_counter() - start)
    finally:
        for proc in procs:
            common.kill_group(proc)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Guess:
    genre: str = "Jazz"
    confidence: float = 0.9
    model: str = "bench"
    duration: float = 30.0
    format: str = "flac"

    @property
    def probabilities(self) -> dict[str, float]:
        return {"Jazz": 0.9, "Rock": 0.1}


def _claimer(url: str, seconds: float, batch: int, go: multiprocessing.synchronize.Event,
             out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from storage import workqueue
    from storage.db import create

    engine = create(url)
    worker = workqueue.register_worker(engine)
    go.wait()
    cycles, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for held in workqueue.claim(engine, worker, batch, 60.0):
            workqueue.finish(engine, held, worker, _Guess(), fingerprint=None, size=1, mtime=1.0)
            cycles += 1
    out.put(cycles)
    engine.dispose()


def claim_rate(url: str, rows: int, claimers: int, seconds: float, batch: int) -> float:
    """Tracks claimed and recorded per second, summed over ``claimers`` processes that
    claim ``batch`` tracks at a time."""
    from sqlalchemy import insert

    from storage.db import open_catalogue
    from storage.schema import Track

    engine = open_catalogue(url)
    with engine.begin() as conn:
        for start in range(0, rows, 10_000):
            conn.execute(insert(Track), [dict(path=f"/music/{i // 100}/{i}.flac", size=1,
                                              mtime=1.0, status="pending")
                                         for i in range(start, min(rows, start + 10_000))])
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, seconds, batch, go, out))
             for _ in range(claimers)]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # every claimer connected and registered
    go.set()
    total = sum(out.get(timeout=seconds + 120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    return total / seconds


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=100)
    parser.add_argument("--pg", default=DEFAULT_PG, metavar="URL",
                        help=f"a PostgreSQL database to create the benchmark's in "
                             f"(default {DEFAULT_PG})")
    parser.add_argument("--claim-rows", type=int, default=None,
                        help="pending rows for the queue figure (default 100000; 2000 quick)")
    parser.add_argument("--claimers", type=int, default=8)
    parser.add_argument("--claim-seconds", type=float, default=None,
                        help="how long the claimers run (default 15; 2 quick)")
    parser.add_argument("--claim-batch", type=int, default=4,
                        help="tracks per claim (`genred worker` claims 2 x its decoders)")
    args = parser.parse_args(argv)
    if args.claim_rows is None:
        args.claim_rows = 2000 if args.quick else 100_000
    if args.claim_seconds is None:
        args.claim_seconds = 2.0 if args.quick else 15.0
    report = common.Report("workers", {"tracks": args.tracks, "quick": args.quick,
                                       "claim_rows": args.claim_rows,
                                       "claimers": args.claimers,
                                       "env": " ".join(args.env) or "-"})
    report.header()
    paths = inputs.library(common.cache_root(args.cache), args.tracks, args.quick)
    with common.Workdir("workers", args.keep) as work:
        lib = inputs.link_into(paths, work / "library")
        files = sorted(p for p in lib.rglob("*") if p.is_file())
        env = common.genred_env(work, args.model, args.env)
        scan = common.run_genred(["scan", str(lib)], env)
        report.result("scan_tracks_per_second", args.tracks / scan.seconds, "tracks/s")
        for n in (1, 2):
            with Database(args.pg) as url:
                rate = workers_rate(url, files, n, env, timeout=3600)
            report.result(f"workers_{n}_tracks_per_second", rate, "tracks/s")
            report.result(f"workers_{n}_to_scan_ratio", rate * scan.seconds / args.tracks)
    with Database(args.pg) as url:
        claims = claim_rate(url, args.claim_rows, args.claimers, args.claim_seconds,
                            args.claim_batch)
    report.result("queue_tracks_per_second", claims,
                  f"tracks claimed + recorded/s ({args.claimers} claimers x "
                  f"{args.claim_batch} per claim, {args.claim_rows} pending rows)")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
