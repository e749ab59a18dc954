"""Training: seconds per epoch per 1,000 clips (the training loop on in-memory features,
default and paper architectures), and the duration of a retrain with 500 new corrections.

    python benchmarks/bench_train.py [--tracks 500] [--clips 1000] [--quick]

Epochs: ``classifier.fit.fit`` (the loop `genred train` and the retrain job use: balanced
sampling, augmentation, validation each epoch) on ``--clips`` synthetic log-mel clips —
what a warm feature cache hands it. Retrain: ``--tracks`` labelled songs (40 s, mixed
formats) get corrections through the storage layer, then `genred retrain --now` runs the
daemon's retrain job (decode with a cold feature cache, fine-tune for retrain.epochs,
evaluate old and new on the same held-out songs, decide).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, inputs

N_LABELS = 11
CLIPS_PER_SONG = 5  # classifier.training.fine_tune's default


def epoch_seconds(arch: str, clips: int, epochs: int) -> tuple[float, int]:
    """(seconds per epoch, torch threads) of ``fit`` on ``clips`` random clips."""
    import numpy as np
    import torch

    from classifier import model
    from classifier.features import FeatureParams
    from classifier.fit import FitOptions, SongSet, fit
    from classifier.predict import set_torch_threads

    set_torch_threads()
    p = FeatureParams()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((clips, p.n_mels, p.frames), dtype=np.float32)
    y = np.arange(clips) % N_LABELS
    val = SongSet([rng.standard_normal((3, p.n_mels, p.frames), dtype=np.float32)
                   for _ in range(4)], [0, 1, 2, 3])
    net = model.build(arch, N_LABELS, p.n_mels, p.frames)
    options = FitOptions(epochs=epochs, patience=epochs + 1, progress=False)
    start = time.perf_counter()
    result = fit(net, x, y, val, options)
    elapsed = time.perf_counter() - start
    return elapsed / len(result.history), torch.get_num_threads()


def _has_retrain_verb(env: dict[str, str]) -> bool:
    proc = subprocess.run([common.genred_exe(), "retrain", "--help"], env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0


def _label(url: str, labelled: list[tuple[Path, str]]) -> float:
    from storage.corrections import add_labels
    from storage.db import open_catalogue

    start = time.perf_counter()
    engine = open_catalogue(url)
    add_labels(engine, [(str(p), g) for p, g in labelled])
    engine.dispose()
    return time.perf_counter() - start


def _last_run(work: Path) -> dict[str, Any]:
    import json
    import sqlite3

    with sqlite3.connect(f"file:{work / 'catalogue.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT decision, reason, n_labels, metrics FROM training_runs "
                           "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        raise common.BenchError("the retrain recorded no training run")
    metrics = json.loads(row[3]) if isinstance(row[3], str) else (row[3] or {})
    return {"decision": row[0], "reason": row[1], "n_labels": row[2],
            "n_train": int(metrics.get("n_train", 0))}


def _default_epochs() -> int:
    from daemon.config import Config

    return Config().retrain.epochs


def measure_retrain(report: common.Report, args: Any, per_epoch_1000: float) -> None:
    labelled = inputs.labelled(common.cache_root(args.cache), args.tracks, args.quick)
    with common.Workdir("train", args.keep) as work:
        lib = inputs.link_into([p for p, _ in labelled], work / "library")
        labelled = [(lib / p.name, g) for p, g in labelled]
        epochs = args.retrain_epochs or (2 if args.quick else _default_epochs())
        env = common.genred_env(work, args.model, args.env, retrain_epochs=str(epochs))
        if not _has_retrain_verb(env):
            report.result("retrain_seconds", "missing", "(`genred retrain` not available)")
            return
        report.result("label_seconds", _label(env["GENRED_DB"], labelled),
                      f"s (setup: {len(labelled)} corrections via the storage layer)")
        run = common.run_genred(["retrain", "--now"], env, timeout=4 * 3600,
                                sample_memory=True)
        outcome = _last_run(work)
        report.note(f"retrain decision: {outcome['decision']} — {outcome['reason']}")
        report.result("retrain_seconds", run.seconds,
                      f"s for {len(labelled)} new corrections, {epochs} epochs")
        report.result("retrain_peak_pss_tree", run.peak_pss_kib / 1024, "MiB")
        _project(report, epochs, outcome["n_train"], per_epoch_1000, run.seconds)


def _project(report: common.Report, epochs: int, n_train: int, per_epoch_1000: float,
             seconds: float) -> None:
    """With fewer epochs than the default: the default's duration, from the measured
    seconds per epoch per 1,000 clips (a lower bound: distillation adds a forward pass)."""
    default = _default_epochs()
    if epochs >= default or not n_train:
        return
    clips = n_train * CLIPS_PER_SONG
    projected = seconds + (default - epochs) * per_epoch_1000 * clips / 1000
    report.result("retrain_seconds_projected", projected,
                  f"s for retrain.epochs={default} ({n_train} training songs x "
                  f"{CLIPS_PER_SONG} clips; estimate)")


def run(argv: list[str] | None = None) -> None:
    parser = common.base_parser(__doc__.splitlines()[0], default_tracks=500)
    parser.add_argument("--clips", type=int, default=1000, help="clips per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per arch")
    parser.add_argument("--retrain-epochs", type=int, default=None,
                        help="retrain.epochs for the retrain (default: the config default); "
                             "fewer gives a projected figure for the default too")
    args = parser.parse_args(argv)
    clips = 64 if args.quick else args.clips
    epochs = 1 if args.quick else args.epochs
    archs = ("pooled",) if args.quick else ("pooled", "paper")
    report = common.Report("train", {"clips": clips, "epochs": epochs, "archs": " ".join(archs),
                                     "corrections": args.tracks, "quick": args.quick})
    report.header()
    per_1000: dict[str, float] = {}
    for arch in archs:
        per_epoch, threads = epoch_seconds(arch, clips, epochs)
        report.note(f"{arch}: torch threads {threads}")
        per_1000[arch] = per_epoch * 1000 / clips
        report.result(f"{arch}_seconds_per_epoch_per_1000_clips", per_1000[arch], "s")
    measure_retrain(report, args, per_1000["pooled"])
    report.finish(args.json)


if __name__ == "__main__":
    sys.exit(common.main_guard(run))
