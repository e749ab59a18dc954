"""Scan throughput: tracks/second of a real `genred scan` (fresh catalogue, default
settings) next to the decode floor measured in the same run on the same files.

    python benchmarks/bench_scan.py [--tracks 200] [--workers N] [--quick]

Targets (issue 15, the backbone default, on 2 cores): scan >= 5 tracks/s on 3-5 minute
tracks, >= 0.4 x the floor, peak PSS <= 1 GiB (issue 5 asked 0.8 x the floor of the
`pooled` CNN). Both runs read the files from the page cache (every file is read once
before timing), so the figures compare CPU work, not the disk. A backbone model's scan
computes each track's embedding in its decode processes (daemon/decoding.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, floor, inputs


def _warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=200)
    parser.add_argument("--workers", type=int, default=None,
                        help="pass --workers to the scan (default: genred's default)")
    args = parser.parse_args(argv)
    params, n_clips, default_workers = floor.model_settings(args.model)
    workers = args.workers or default_workers
    report = common.Report("scan", {"tracks": args.tracks, "quick": args.quick,
                                    "workers": workers, "clips_per_track": n_clips,
                                    "env": " ".join(args.env) or "-"})
    report.header()
    paths = inputs.library(common.cache_root(args.cache), args.tracks, args.quick)
    _warm_page_cache(paths)
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
    fl = floor.measure(paths, workers, params, n_clips)
    scan_rate = args.tracks / scan.seconds
    report.note(f"catalogue after the scan: {counts}")
    report.note(f"floor: {fl.unreadable} unreadable of {fl.tracks}")
    report.result("scan_seconds", scan.seconds, "s")
    report.result("scan_tracks_per_second", scan_rate, "tracks/s", target=">= 5")
    report.result("floor_tracks_per_second", fl.tracks_per_second, "tracks/s")
    report.result("scan_to_floor_ratio", scan_rate / fl.tracks_per_second, "",
                  target=">= 0.4")
    report.result("scan_cpu_ms_per_track", 1000 * scan.cpu_seconds / args.tracks,
                  "ms (genred + its workers, start-up included)")
    report.result("floor_cpu_ms_per_track", 1000 * fl.cpu_seconds / args.tracks,
                  "ms (pool processes, start-up included)")
    report.result("floor_to_scan_cpu_ratio", fl.cpu_seconds / scan.cpu_seconds,
                  "(the ratio in CPU time: steadier on a busy machine)", target=">= 0.4")
    report.result("scan_startup_seconds", startup, "s")
    report.result("scan_tracks_per_second_after_startup", args.tracks / max(
        scan.seconds - startup, 1e-9), "tracks/s (the scan's seconds less an empty scan's: "
        "a big library's rate)")
    report.result("scan_peak_rss_tree", scan.peak_rss_kib / 1024, "MiB")
    report.result("scan_peak_pss_tree", scan.peak_pss_kib / 1024, "MiB", target="<= 1024")
    report.result("tracks_recorded_ok", counts.get("ok", 0), f"of {args.tracks}")
    sample = paths[: min(len(paths), 4 if args.quick else 8)]
    for stage, ms in floor.stage_timings(sample, params, n_clips, args.model).items():
        report.result(f"stage_ms_per_track_{stage}", ms, "ms (serial, median)")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
