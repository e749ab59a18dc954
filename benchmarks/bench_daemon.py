"""Daemon latency: time from a file's close (copied into a watched folder of a real
`genred run`) to its catalogue row, median and p95 over 50 dropped files.

    python benchmarks/bench_daemon.py [--tracks 50] [--interval 1.5] [--settle S] [--quick]

Target (issue 5): median <= settle delay + 1 s. Files (3-5 minute songs, mixed formats)
are copied in one at a time, ``--interval`` seconds apart, after a warm-up file has been
catalogued (so model loading is not counted; it is reported as ``startup``). The catalogue
is polled read-only every 50 ms: ``seen`` is when a file's row first exists, ``classified``
when it has status ok. Also: CPU used by the idle daemon afterwards, and SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, inputs, procmem

POLL = 0.05


class CataloguePoller(threading.Thread):
    """Records, per file name, when its row first appeared and when it became ok."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.seen: dict[str, float] = {}
        self.classified: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(POLL):
            try:
                rows = self._rows()
            except sqlite3.Error:  # not created yet, or mid-migration
                continue
            now = time.time()
            for path, status in rows:
                name = Path(path).name
                self.seen.setdefault(name, now)
                self.statuses[name] = status
                if status != "pending":
                    self.classified.setdefault(name, now)

    def _rows(self) -> list[tuple[str, str]]:
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT path, status FROM tracks").fetchall()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def _drop(source: Path, target: Path) -> float:
    """Copy like a file manager does (write, close); returns the wall time of the close."""
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return time.time()


def _wait_for(poller: CataloguePoller, name: str, timeout: float, daemon: subprocess.Popen[str],
              log: Path) -> None:
    deadline = time.monotonic() + timeout
    while name not in poller.classified:
        if daemon.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise common.BenchError(f"`genred run` exited {daemon.returncode}: {tail}")
        if time.monotonic() > deadline:
            raise common.BenchError(f"{name} was not catalogued within {timeout:.0f} s")
        time.sleep(POLL)


def _stop(daemon: subprocess.Popen[str]) -> float:
    start = time.perf_counter()
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired as e:
        common.kill_group(daemon)
        raise common.BenchError("`genred run` still running 30 s after SIGTERM") from e
    if daemon.returncode != 0:
        raise common.BenchError(f"`genred run` exited {daemon.returncode} after SIGTERM")
    return time.perf_counter() - start


def _measure(args: argparse.Namespace, work: Path, sources: list[Path],
             report: common.Report) -> None:
    watched = work / "watched"
    watched.mkdir()
    settings = {"settle_seconds": str(args.settle)} if args.settle is not None else {}
    env = common.genred_env(work, args.model, args.env, **settings)
    log = work / "daemon.log"
    poller = CataloguePoller(work / "catalogue.db")
    poller.start()
    with log.open("w") as log_fh:
        start = time.time()
        daemon = subprocess.Popen([common.genred_exe(), "run", "--watch", str(watched)],
                                  env=env, stdout=log_fh, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        try:
            warm = sources[0]
            _drop(warm, watched / f"warmup{warm.suffix}")
            _wait_for(poller, f"warmup{warm.suffix}", 300, daemon, log)
            report.result("startup_to_first_row", time.time() - start, "s",
                          target="model load + settle + one classification")
            closes = {}
            for i, source in enumerate(sources[1:]):
                name = f"drop{i:03d}{source.suffix}"
                closes[name] = _drop(source, watched / name)
                time.sleep(args.interval)
            for name in closes:
                _wait_for(poller, name, 300, daemon, log)
            _report_latency(report, poller, closes, args.settle)
            _report_idle(report, daemon, 2.0 if args.quick else 10.0)
            report.result("sigterm_to_exit", _stop(daemon), "s", target="a few seconds")
        finally:
            poller.stop()
            if daemon.poll() is None:
                common.kill_group(daemon)
    statuses = list(poller.statuses.values())
    report.note(f"catalogue statuses: { {s: statuses.count(s) for s in sorted(set(statuses))} }")


def _report_latency(report: common.Report, poller: CataloguePoller, closes: dict[str, float],
                    settle: float | None) -> None:
    from daemon.config import Config

    settle_s = settle if settle is not None else Config().settle_seconds
    seen = [poller.seen[n] - t for n, t in closes.items()]
    done = [poller.classified[n] - t for n, t in closes.items()]
    report.result("settle_seconds", settle_s, "s")
    report.result("close_to_row_seen_median", common.median(seen), "s")
    report.result("close_to_classified_median", common.median(done), "s",
                  target=f"<= {settle_s + 1:g} s (settle + 1)")
    report.result("close_to_classified_p95", common.percentile(done, 95), "s")
    report.result("close_to_classified_max", max(done), "s")


def _report_idle(report: common.Report, daemon: subprocess.Popen[str], seconds: float) -> None:
    """CPU of the daemon and its decode processes over ``seconds``, from 2 s after the last
    file was classified (the tail of that work — logging, the status line — is not idle)."""
    time.sleep(2.0)
    before = procmem.cpu_seconds(daemon.pid)
    time.sleep(seconds)
    used = procmem.cpu_seconds(daemon.pid) - before
    report.result("idle_cpu_percent", 100 * used / seconds, "% of one core",
                  target="~0 (no polling)")


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=50)
    parser.add_argument("--interval", type=float, default=1.5,
                        help="seconds between two dropped files (default 1.5)")
    parser.add_argument("--settle", type=float, default=None,
                        help="settle_seconds for the daemon (default: genred's default)")
    args = parser.parse_args(argv)
    report = common.Report("daemon", {"files": args.tracks, "interval_s": args.interval,
                                      "settle_s": args.settle or "default",
                                      "quick": args.quick, "env": " ".join(args.env) or "-"})
    report.header()
    sources = inputs.library(common.cache_root(args.cache), args.tracks + 1, args.quick)
    with common.Workdir("daemon", args.keep) as work:
        _measure(args, work, sources, report)
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
