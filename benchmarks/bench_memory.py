"""Memory: peak RSS of a real `genred scan` of 2,000 tracks (fresh catalogue, default
settings), and of a quarter as many, to show memory does not grow with the track count.

    python benchmarks/bench_memory.py [--tracks 2000] [--quick]

Target (issue 5): peak <= 1 GB and flat in the number of tracks. Three measures:
``tree_pss`` (the sum over genred and its worker processes of their proportional set size,
sampled from /proc every 0.2 s: pages shared between forked workers counted once — the
honest total), ``tree_rss`` (the same sum of RSS: counts shared pages once per process, an
upper bound) and ``largest_process_rss`` (kernel's maxrss of the biggest single process,
from wait4). Inputs are 35-45 s mono 22.05 kHz songs so 2,000 files stay cheap to make and small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, inputs

GB_MIB = 1000**3 / 1024**2


def _scan(paths: list[Path], work: Path, args: argparse.Namespace) -> common.GenredRun:
    lib = inputs.link_into(paths, work / "library")
    env = common.genred_env(work, args.model, args.env)
    run = common.run_genred(["scan", str(lib)], env, timeout=4 * 3600, sample_memory=True)
    counts = common.catalogue_counts(work)
    if sum(counts.values()) != len(paths):
        raise common.BenchError(f"the catalogue holds {counts} after scanning {len(paths)} "
                                "files")
    return run


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=2000)
    parser.add_argument("--small", type=int, default=None,
                        help="the smaller scan's track count (default: tracks / 4)")
    args = parser.parse_args(argv)
    small = args.small or max(1, args.tracks // 4)
    report = common.Report("memory", {"tracks": args.tracks, "small": small,
                                      "quick": args.quick, "env": " ".join(args.env) or "-"})
    report.header()
    paths = inputs.short_tracks(common.cache_root(args.cache), args.tracks, args.quick)
    peaks: dict[int, common.GenredRun] = {}
    for n in (small, args.tracks):
        with common.Workdir(f"memory{n}", args.keep) as work:
            peaks[n] = run = _scan(paths[:n], work, args)
        report.result(f"scan{n}_seconds", run.seconds, "s")
        report.result(f"scan{n}_tracks_per_second", n / run.seconds, "tracks/s")
        report.result(f"scan{n}_tree_pss", run.peak_pss_kib / 1024, "MiB",
                      target=f"<= {GB_MIB:.0f} MiB (1 GB)")
        report.result(f"scan{n}_tree_rss", run.peak_rss_kib / 1024, "MiB")
        report.result(f"scan{n}_largest_process_rss", run.max_process_rss_kib / 1024, "MiB")
        report.result(f"scan{n}_processes", run.max_processes, "(genred + workers, max)")
    big, little = peaks[args.tracks], peaks[small]
    report.result("pss_growth", big.peak_pss_kib / max(1, little.peak_pss_kib),
                  f"x for {args.tracks / small:g}x the tracks", target="~1.0 (flat)")
    report.result("largest_process_growth",
                  big.max_process_rss_kib / max(1, little.max_process_rss_kib),
                  f"x for {args.tracks / small:g}x the tracks", target="~1.0 (flat)")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
