"""Scan throughput: tracks/second of a real `genred scan` (fresh catalogue, default
settings) next to the decode floor measured in the same run on the same files.

    python benchmarks/bench_scan.py [--tracks 200] [--workers N] [--repeat R] [--quick]

Targets (issue 15, the backbone default, on 2 cores): scan >= 5 tracks/s on 3-5 minute
tracks, >= 0.4 x the floor, peak PSS <= 1 GiB (issue 5 asked 0.8 x the floor of the
`pooled` CNN). Both runs read the files from the page cache (every file is read once
before timing), so the figures compare CPU work, not the disk. A backbone model's scan
computes each track's embedding in its decode processes (daemon/decoding.py).
``--repeat R`` runs R rounds of (scan, floor) one after the other and reports each round
and the medians: on a VM the floor alone moves by 10-20 % between runs minutes apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, floor, inputs


def _warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass


@dataclass(frozen=True)
class Round:
    scan: common.GenredRun
    startup: float
    floor: floor.Floor
    counts: dict[str, int]


def _round(paths: list[Path], args: argparse.Namespace, workers: int, params: Any,
           n_clips: int) -> Round:
    with common.Workdir("scan", args.keep) as work:
        lib = inputs.link_into(paths, work / "library")
        empty = work / "startup" / "empty"
        empty.mkdir(parents=True)
        startup_env = common.genred_env(work / "startup", args.model, args.env)
        startup = common.run_genred(["scan", str(empty)], startup_env).seconds
        env = common.genred_env(work, args.model, args.env)
        scan_args = ["scan", str(lib)] + (["--workers", str(args.workers)] if args.workers else [])
        scan = common.run_genred(scan_args, env, sample_memory=True)
        counts = common.catalogue_counts(work)
    return Round(scan, startup, floor.measure(paths, workers, params, n_clips), counts)


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=200)
    parser.add_argument("--workers", type=int, default=None,
                        help="pass --workers to the scan (default: genred's default)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (scan, floor); the figures are their medians")
    args = parser.parse_args(argv)
    params, n_clips, default_workers = floor.model_settings(args.model)
    workers = args.workers or default_workers
    report = common.Report("scan", {"tracks": args.tracks, "quick": args.quick,
                                    "workers": workers, "clips_per_track": n_clips,
                                    "repeat": args.repeat, "env": " ".join(args.env) or "-"})
    report.header()
    paths = inputs.library(common.cache_root(args.cache), args.tracks, args.quick)
    _warm_page_cache(paths)
    rounds = [_round(paths, args, workers, params, n_clips) for _ in range(max(1, args.repeat))]
    n = args.tracks
    for i, r in enumerate(rounds, 1):
        report.note(f"round {i}: scan {n / r.scan.seconds:.2f} tracks/s, floor "
                    f"{r.floor.tracks_per_second:.2f} tracks/s, ratio "
                    f"{n / r.scan.seconds / r.floor.tracks_per_second:.3f} (wall), "
                    f"{r.floor.cpu_seconds / r.scan.cpu_seconds:.3f} (CPU); catalogue {r.counts}; "
                    f"floor: {r.floor.unreadable} unreadable of {r.floor.tracks}")

    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    scan_seconds = median([r.scan.seconds for r in rounds])
    scan_rate = median([n / r.scan.seconds for r in rounds])
    floor_rate = median([r.floor.tracks_per_second for r in rounds])
    report.result("scan_seconds", scan_seconds, "s")
    report.result("scan_tracks_per_second", scan_rate, "tracks/s", target=">= 5")
    report.result("floor_tracks_per_second", floor_rate, "tracks/s")
    report.result("scan_to_floor_ratio", median(
        [n / r.scan.seconds / r.floor.tracks_per_second for r in rounds]), "",
        target=">= 0.4")
    report.result("scan_to_floor_ratio_rounds", " ".join(
        f"{n / r.scan.seconds / r.floor.tracks_per_second:.4g}" for r in rounds),
        "(wall, each round)")
    report.result("scan_cpu_ms_per_track", median([1000 * r.scan.cpu_seconds / n for r in rounds]),
                  "ms (genred + its workers, start-up included)")
    report.result("floor_cpu_ms_per_track", median([1000 * r.floor.cpu_seconds / n
                                                    for r in rounds]),
                  "ms (pool processes, start-up included)")
    report.result("floor_to_scan_cpu_ratio", median(
        [r.floor.cpu_seconds / r.scan.cpu_seconds for r in rounds]),
        "(the ratio in CPU time: steadier on a busy machine)", target=">= 0.4")
    report.result("scan_startup_seconds", median([r.startup for r in rounds]), "s")
    report.result("scan_tracks_per_second_after_startup", median(
        [n / max(r.scan.seconds - r.startup, 1e-9) for r in rounds]),
        "tracks/s (the scan's seconds less an empty scan's: a big library's rate)")
    report.result("scan_peak_rss_tree", max(r.scan.peak_rss_kib for r in rounds) / 1024, "MiB")
    report.result("scan_peak_pss_tree", max(r.scan.peak_pss_kib for r in rounds) / 1024, "MiB",
                  target="<= 1024")
    report.result("tracks_recorded_ok", min(r.counts.get("ok", 0) for r in rounds), f"of {n}")
    sample = paths[: min(len(paths), 4 if args.quick else 8)]
    for stage, ms in floor.stage_timings(sample, params, n_clips, args.model).items():
        report.result(f"stage_ms_per_track_{stage}", ms, "ms (serial, median)")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
