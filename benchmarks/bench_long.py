"""Long files: the cost of classifying a 10-minute file against a 1-minute file of the same
format, per format (MP3, FLAC, M4A, Ogg Vorbis).

    python benchmarks/bench_long.py [--repeats 5] [--quick]

Target (issue 5): ratio <= 1.2 — the classifier seeks to its clip windows instead of
decoding the whole file. Timed in this process with the active (else bundled) model, the
model already loaded, medians over ``--repeats`` alternating runs. ``decode_ratio`` times
decoding + features only (no CNN), the stricter figure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, inputs


def _median_seconds(fn: Callable[[Path], Any], short: Path, long: Path, repeats: int
                    ) -> tuple[float, float, float, float]:
    """Median (wall short, wall long, CPU short, CPU long) seconds of ``fn`` per file. CPU
    time (this process, all threads) is the steadier figure on a busy machine."""
    wall: dict[Path, list[float]] = {short: [], long: []}
    cpu: dict[Path, list[float]] = {short: [], long: []}
    for _ in range(repeats):
        for path in (short, long):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(path)
            wall[path].append(time.perf_counter() - start)
            cpu[path].append(time.process_time() - start_cpu)
    return (common.median(wall[short]), common.median(wall[long]),
            common.median(cpu[short]), common.median(cpu[long]))


def _load_classifier(report: common.Report, model: str | None) -> Any:
    from classifier.bundle import BundleError
    from classifier.predict import Classifier
    from classifier.store import ModelNotFound

    try:
        classifier = Classifier.load(model)
    except (BundleError, ModelNotFound) as e:
        raise common.BenchError(f"no model to classify with: {e}") from e
    report.note(f"model: {classifier.version} ({classifier.path}), "
                f"{classifier.clips_per_track} clips per track")
    return classifier


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per file")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    formats = (".flac",) if args.quick else inputs.FORMATS
    report = common.Report("long", {"repeats": repeats, "formats": " ".join(formats),
                                    "quick": args.quick})
    report.header()
    classifier = _load_classifier(report, args.model)
    for ext in formats:
        short, long = inputs.long_pair(common.cache_root(args.cache), ext, args.quick)
        classifier.classify(short)  # load the weights, warm caches
        name = ext.lstrip(".")
        d_short, d_long, d_cpu_short, d_cpu_long = _median_seconds(
            classifier.features, short, long, repeats)
        c_short, c_long, _, _ = _median_seconds(classifier.classify, short, long, repeats)
        report.result(f"{name}_classify_1min", 1000 * c_short, "ms")
        report.result(f"{name}_classify_10min", 1000 * c_long, "ms")
        report.result(f"{name}_classify_ratio", c_long / c_short, "", target="<= 1.2")
        report.result(f"{name}_decode_ratio", d_long / d_short, "",
                      target="<= 1.2 (decode + features only, wall)")
        report.result(f"{name}_decode_cpu_ratio", d_cpu_long / d_cpu_short, "",
                      target="<= 1.2 (decode + features only, CPU time)")
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
