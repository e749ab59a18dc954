"""Verbs that need no catalogue: ``train``, ``evaluate``, ``classify``.

Examples::

    genred classify song.mp3 ~/Music/Jazz          # folders are searched recursively
    genred classify --format json a.flac b.ogg     # [{path, genre, confidence, ...}]
    genred train ~/labelled --epochs 30            # new version in the model store
    genred train ~/labelled --from starter --activate
    genred evaluate ~/labelled --model 20261125T091500Z-3fa9c1 --format json

Exit status: 0 when the verb ran (``classify`` lists unreadable files as ``{path, error}``
and still exits 0); 1 when no model can be loaded or the training data cannot be used;
2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from daemon.config import Config, flag_type
from daemon.userpaths import require_existing, shown

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add train / evaluate / classify (heavy imports happen inside the handlers)."""
    _register_classify(sub, common)
    _register_evaluate(sub, common)
    _register_train(sub, common)


def _positive(text: str, most: int = 1000) -> int:
    try:
        value = int(text) if len(text) <= 20 else 0
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {most}, not "
                                         f"{text[:40]}")
    return value


def _epochs(text: str) -> int:
    return _positive(text, 100_000)  # early stopping ends most runs far sooner


def _seed(text: str) -> int:
    try:
        value = int(text) if len(text) <= 12 else -1
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1}, not "
                                         f"{text[:40]}")
    return value


def _model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="cfg_model", metavar="M", default=None,
                   help="bundle directory, version id in the model store, or 'starter' "
                        "(default: the active model, else the bundled starter)")


def _format_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="output format (default table)")


def _register_classify(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("classify", parents=[common], help="predict the genre of audio files",
                       description="Predict the genre of files (folders: recursively). "
                                   "No catalogue is read or written.")
    p.add_argument("paths", nargs="+", metavar="FILE", help="audio files or folders")
    _model_flag(p)
    _format_flag(p)
    p.add_argument("--clips", dest="cfg_clips_per_track",
                   type=flag_type("clips_per_track"), default=None, metavar="K",
                   help="30 s clips per track, probabilities averaged (default 3)")
    p.set_defaults(handler=_classify)


def _register_evaluate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("evaluate", parents=[common], help="accuracy of a model on labelled music",
                       description="Classify every song of DIR (one sub-folder per genre) "
                                   "and compare with its folder.")
    p.add_argument("data_dir", metavar="DIR", help="one sub-folder per genre")
    _model_flag(p)
    _format_flag(p)
    p.add_argument("--clips", dest="cfg_clips_per_track",
                   type=flag_type("clips_per_track"), default=None, metavar="K",
                   help="30 s clips per song (default 3)")
    p.add_argument("--cache", dest="cfg_cache", default=None, metavar="DIR",
                   help="feature cache directory (default: the config's cache)")
    p.set_defaults(handler=_evaluate)


def _register_train(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model on labelled music",
                       description="Train on DIR (one sub-folder per genre, any formats, "
                                   "nested folders allowed). The new model is NOT made active "
                                   "unless --activate is given.")
    p.add_argument("data_dir", metavar="DIR", help="one sub-folder per genre")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where the bundle goes (default: a new version in the model store)")
    p.add_argument("--seed", type=_seed, default=0, help="split and training seed (default 0)")
    p.add_argument("--clips-per-song", type=_positive, default=5, metavar="N",
                   help="random 30 s training clips per song (default 5)")
    p.add_argument("--epochs", type=_epochs, default=40, metavar="N",
                   help="at most N epochs; stops early when validation stops improving")
    p.add_argument("--arch", choices=["pooled", "paper", "backbone"], default=None,
                   help="network: backbone (default: the pretrained MSD_musicnn, frozen, "
                        "with a small head over its track embeddings), pooled or paper (CNNs "
                        "trained from scratch; --epochs and --clips-per-song are theirs)")
    p.add_argument("--from", dest="from_model", metavar="MODEL", default=None,
                   help="start from this model and keep its genres (grow the genre set)")
    p.add_argument("--cache", dest="cfg_cache", default=None, metavar="DIR",
                   help="feature cache directory (default: the config's cache)")
    p.add_argument("--activate", action="store_true",
                   help="make the new model the active one")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_train)


def _store(cfg: Config) -> Any:
    from classifier.store import ModelStore

    return ModelStore(cfg.model_store_path)


def _walk(paths: list[str]) -> Any:
    """Files as given (regular files only: a FIFO is never opened); folders recursively,
    audio file names only, sorted; unreadable folders and non-regular files counted
    (``daemon.walk.Walk``)."""
    from classifier.dataset import is_audio_name
    from daemon.walk import Walk

    return Walk([Path(p).expanduser() for p in paths], is_audio=is_audio_name)


def _load_classifier(cfg: Config) -> Any:
    """The Classifier or None after printing why (no model could load)."""
    from classifier.bundle import BundleError
    from classifier.predict import Classifier
    from classifier.store import ModelNotFound

    try:
        clf = Classifier.load(cfg.model or None, _store(cfg), cfg.clips_per_track)
        clf.ready()  # load the weights now: a damaged bundle is a clean error here
        return clf
    except (ModelNotFound, BundleError) as e:
        print(f"genred: cannot load a model: {e}", file=sys.stderr)
        return None


def _classify(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.audio import UnreadableAudio
    from classifier.predict import Unclassifiable

    if not require_existing(args.paths):
        return EXIT_USAGE
    clf = _load_classifier(cfg)
    if clf is None:
        return EXIT_FAILED
    from storage.genres import MultiGenre

    # the answer as the catalogue records it: the genre tree, several genres per track
    multi = MultiGenre(cfg.max_genres, cfg.secondary_threshold, cfg.tree)
    results: list[dict[str, Any]] = []
    walk = _walk(args.paths)
    for path in walk:
        try:
            p = clf.classify(path)
        except UnreadableAudio as e:
            log.warning("%s", e)
            results.append({"path": str(path), "error": e.reason})
            continue
        except Unclassifiable as e:  # too short, silent: a reason instead of a genre
            results.append({"path": str(path), "error": str(e)})
            continue
        genre, confidence, probabilities, genres = multi.answer(p.genre, p.confidence,
                                                                p.probabilities)
        results.append({"path": str(path), "genre": genre, "genres": genres,
                        "confidence": round(confidence, 4),
                        "probabilities": {g: round(v, 4) for g, v in probabilities.items()},
                        "model": p.model, "duration": round(p.duration, 2), "format": p.format})
    if walk.summary():
        print(f"genred: {walk.summary()} (see the log lines above)", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(results, indent=2))  # ASCII: a name's odd bytes as \\udcff escapes
    else:
        _print_classify_table(results, cfg)
    return 0


def _print_classify_table(results: list[dict[str, Any]], cfg: Config) -> None:
    names = [shown(r["path"]) for r in results]
    width = max([len(n) for n in names] + [4])
    print(f"{'PATH':<{width}}  {'GENRE':<12} {'CONF':>5}  RUNNER-UP")
    for name, r in zip(names, results, strict=True):
        if "error" in r:
            print(f"{name:<{width}}  {'-':<12} {'-':>5}  error: {shown(r['error'])}")
            continue
        # the runner-up: the likeliest genre neither above nor below the answer in the tree
        ranked = [(g, v) for g, v in sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
                  if not cfg.tree.related(g, r["genre"])]
        runner = f"{ranked[0][0]} {ranked[0][1]:.2f}" if ranked else ""
        print(f"{name:<{width}}  {'; '.join(r['genres']):<12} {r['confidence']:>5.2f}  {runner}")


def _evaluate(args: argparse.Namespace, cfg: Config) -> int:
    from classifier import training
    from classifier.bundle import BundleError
    from classifier.dataset import DatasetError
    from classifier.store import ModelNotFound

    try:
        store = _store(cfg)
        path = store.resolve(cfg.model) if cfg.model else store.active()
        result = training.evaluate(path, args.data_dir, clips_per_track=cfg.clips_per_track,
                                   cache_dir=cfg.cache_path, progress=sys.stderr.isatty(),
                                   lists=(cfg.max_genres, cfg.secondary_threshold))
    except (ModelNotFound, BundleError, DatasetError) as e:
        print(f"genred: {e}", file=sys.stderr)
        return EXIT_FAILED
    seen = result.get("in_training_data") or []
    if seen:
        print(f"genred: warning: {len(seen)} of the {result['n_songs']} songs were in the "
              f"model's training data; its accuracy on them is optimistic (the songs are "
              "listed under in_training_data in --format json)", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        _print_evaluate_table(result)
    return 0


def _print_evaluate_table(r: dict[str, Any]) -> None:
    ece = f", ECE {r['ece']:.3f}" if r.get("ece") is not None else ""
    print(f"model {r['model']}: accuracy {r['accuracy']:.3f}, mean per-genre recall "
          f"{r['balanced_accuracy']:.3f}{ece} on {r['n_songs']} songs ({r['n_clips']} clips)")
    print(f"{'GENRE':<14} {'PREC':>5} {'REC':>5} {'F1':>5} {'SONGS':>5} {'PREDICTED':>9}")
    predicted = [sum(col) for col in zip(*r["confusion"], strict=True)] or [0] * len(r["labels"])
    for (genre, m), n_pred in zip(r["per_genre"].items(), predicted, strict=True):
        if m["support"] or n_pred:  # genres neither present nor predicted add nothing
            print(f"{genre:<14} {m['precision']:>5.2f} {m['recall']:>5.2f} {m['f1']:>5.2f} "
                  f"{m['support']:>5} {n_pred:>9}")
    lists = r.get("genre_lists")
    if lists:
        print(f"\ngenre lists (max_genres {lists['max_genres']}, secondary_threshold "
              f"{lists['secondary_threshold']:g}): {lists['with_secondary']} of "
              f"{lists['n_songs']} songs get a second genre; a true genre anywhere in the "
              f"list for {lists['any_hit']:.3f}")
        print(f"{'GENRE':<14} {'PREC':>5} {'REC':>5} {'SONGS':>5} {'LISTED':>6} "
              f"{'AS 2ND':>6} {'2ND OK':>6}")
        for genre, m in lists["per_genre"].items():
            print(f"{genre:<14} {m['precision']:>5.2f} {m['recall']:>5.2f} {m['support']:>5} "
                  f"{m['predicted']:>6} {m['as_secondary']:>6} {m['secondary_hits']:>6}")
    for e in r.get("errors", []):
        print(f"unreadable: {e['path']}: {e['error']}")


def _train(args: argparse.Namespace, cfg: Config) -> int:
    from classifier import training
    from classifier.bundle import BundleError
    from classifier.dataset import DatasetError
    from classifier.store import ModelNotFound

    store = _store(cfg)
    try:
        base = store.resolve(args.from_model) if args.from_model else None
        out = Path(args.out).expanduser() if args.out else store.new_version_dir()
        result = training.train(
            args.data_dir, out, seed=args.seed, clips_per_song=args.clips_per_song,
            epochs=args.epochs, arch=args.arch, from_model=base, cache_dir=cfg.cache_path,
            progress=not args.no_progress,
        )
        if args.activate:
            store.activate(str(result.out_dir))
    except (ModelNotFound, BundleError, DatasetError) as e:
        print(f"genred: {e}", file=sys.stderr)
        return EXIT_FAILED
    m = result.metrics
    print(f"model {result.version} saved to {result.out_dir}")
    ece = f", ECE {m['ece']:.3f}" if m.get("ece") is not None else ""
    print(f"held-out test accuracy {m['accuracy']:.3f}{ece} on {m['n_songs']} songs "
          f"({', '.join(result.labels)})")
    if result.base_metrics is not None:
        print(f"base model on the same songs: {result.base_metrics['accuracy']:.3f}")
    print("active model: " + ("this one" if args.activate else
                              "unchanged (use --activate, or `genred models activate`)"))
    return 0
