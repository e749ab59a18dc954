"""Verbs: run, status, retrain, models list|show|activate, config show.

Heavy modules (torch, SQLAlchemy, watchdog, APScheduler) are imported inside the handlers so
``genred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from daemon.config import Config, flag_type
from daemon.userpaths import EXIT_USAGE, require_existing, shown

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add run, status, retrain, models and config."""
    _register_run(sub, common)
    status = sub.add_parser("status", parents=[common], help="is the daemon running, queue, "
                            "active model, last and next retrain")
    _format_flag(status)
    status.set_defaults(handler=status_cmd)
    retrain = sub.add_parser("retrain", parents=[common], help="retrain on your corrections "
                             "(what the nightly job does)")
    retrain.add_argument("--now", action="store_true",
                         help="run the retrain job now (else: show what it would do)")
    _format_flag(retrain)
    retrain.set_defaults(handler=retrain_cmd)
    _register_models(sub, common)
    config = sub.add_parser("config", parents=[common], help="show the effective config")
    config_sub = config.add_subparsers(dest="config_verb", metavar="show", required=True)
    show = config_sub.add_parser("show", parents=[common], help="the effective config and "
                                 "where it came from")
    show.add_argument("--format", choices=["toml", "json"], default="toml")
    show.set_defaults(handler=config_show_cmd)


def _format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _register_run(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run", parents=[common], help="watch folders and classify as files settle (the daemon)",
        description="Watch the configured folders (or --watch PATH ...), classify new and "
        "changed files once they settle, retrain on the schedule. Stop with SIGTERM/Ctrl-C.",
    )
    run.add_argument("--watch", dest="cfg_watch", action="append", metavar="PATH",
                     default=None, help="folder to watch (repeatable; replaces config watch)")
    run.add_argument("--settle-seconds", dest="cfg_settle_seconds",
                     type=flag_type("settle_seconds"), default=None,
                     metavar="S", help="quiet time before a new file is read (default 5)")
    run.add_argument("--workers", dest="cfg_workers", type=flag_type("workers"), default=None,
                     metavar="N",
                     help="decoding processes (default: all cores)")
    run.add_argument("--clips-per-track", dest="cfg_clips_per_track",
                     type=flag_type("clips_per_track"), default=None,
                     metavar="K", help="30 s clips averaged per track (default 3)")
    run.add_argument("--model", dest="cfg_model", default=None, metavar="M",
                     help="pin a model bundle or version (default: the active one)")
    run.add_argument("--write-tags", dest="cfg_write_tags", action="store_true", default=None,
                     help="write genre tags as files are classified")
    run.add_argument("--no-write-tags", dest="cfg_write_tags", action="store_false",
                     help="never write tags (overrides the config)")
    run.add_argument("--retrain-schedule", dest="cfg_retrain_schedule", default=None,
                     metavar="CRON", help="cron line for the retrain job (default '0 3 * * *')")
    run.add_argument("--web", action="store_true",
                     help="also serve the review page (see `genred web`)")
    from daemon.cli_web import web_flags

    web_flags(run, prefix="web-")
    run.add_argument("--no-classify", dest="classify", action="store_false",
                     help="leave the queue to `genred worker` processes (default: this "
                     "daemon classifies too)")
    run.set_defaults(handler=run_cmd)


def _register_models(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser("models", parents=[common], help="list, show and activate model "
                            "versions (rollback)")
    models_sub = models.add_subparsers(dest="models_verb", metavar="list|show|activate",
                                       required=True)
    listing = models_sub.add_parser("list", parents=[common], help="model versions")
    _format_flag(listing)
    listing.set_defaults(handler=models_list_cmd)
    show = models_sub.add_parser("show", parents=[common], help="one model's labels and metrics")
    show.add_argument("version", metavar="VERSION", help="version id or 'starter'")
    show.add_argument("--format", choices=["table", "json"], default="table")
    show.set_defaults(handler=models_show_cmd)
    activate = models_sub.add_parser("activate", parents=[common],
                                     help="make VERSION the active model (rollback)")
    activate.add_argument("version", metavar="VERSION", help="version id or 'starter'")
    activate.set_defaults(handler=models_activate_cmd)


def _fail(message: str) -> int:
    print(f"genred: {message}", file=sys.stderr)
    return EXIT_FAILED


@contextmanager
def _catalogue(cfg: Config) -> Iterator[Engine]:
    from storage.db import open_catalogue

    engine = open_catalogue(cfg.db_url, cfg.busy_timeout_seconds)
    try:
        yield engine
    finally:
        engine.dispose()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_pairs(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {'-' if value is None or value == '' else value}")


def run_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.cli import config_loader
    from daemon.service import DaemonError, run_daemon
    from storage.db import CatalogueError

    if args.cfg_watch and not require_existing(args.cfg_watch):
        return EXIT_USAGE
    web = None
    try:
        if getattr(args, "web", False):
            from daemon.web.server import Background

            web = Background(cfg)  # ConfigError (no token off loopback) ends here
            web.start()
        return run_daemon(cfg, config_loader(args), classify=args.classify)
    except (DaemonError, CatalogueError) as e:
        return _fail(str(e))
    finally:
        if web is not None:
            web.stop()


def status_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.status import read_status
    from storage.db import CatalogueError

    try:
        with _catalogue(cfg) as engine:
            status = read_status(engine, cfg)
    except CatalogueError as e:
        return _fail(str(e))
    if args.format == "json":
        _print_json(status)
        return 0
    daemon = status["daemon"]
    state = (f"running (pid {daemon['pid']}, since {daemon['started']})" if daemon["running"]
             else "not running")
    retrain = status["last_retrain"]
    _print_pairs([
        ("daemon", state),
        ("watching", ", ".join(shown(w) for w in daemon["watch"]) or None),
        ("heartbeat", daemon["heartbeat"]),
        ("queue", f"{status['queue']} pending" + _queue_note(status)),
        ("tracks", ", ".join(f"{k} {v}" for k, v in status["tracks"].items()) or "none"),
        ("last scan", status["last_scan"]),
        ("active model", status["active_model"]["version"]),
        ("last retrain", _retrain_line(retrain)),
        ("next retrain", status["next_retrain"]),
        ("catalogue", cfg.db_url),
    ])
    _print_workers(status["workers"])
    return 0


def _print_workers(workers: list[dict[str, Any]]) -> None:
    if not workers:
        return
    print(f"\n{'WORKER':>6}  {'KIND':<6}  {'HOST':<20} {'PID':>7}  {'HEARTBEAT':<25} "
          f"{'DONE':>6}  MODEL")
    for w in workers:
        beat = f"{w['heartbeat']} ({w['heartbeat_age']:.0f} s ago)"
        state = "" if w["alive"] else "  (lost: no heartbeat within its lease)"
        print(f"{w['id']:>6}  {w['kind']:<6}  {w['host']:<20} {w['pid']:>7}  {beat:<25} "
              f"{w['tracks_done']:>6}  {w['model'] or '-'}{state}")


def retrain_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from storage.db import CatalogueError

    try:
        with _catalogue(cfg) as engine:
            return _retrain_now(engine, cfg, args.format) if args.now else _retrain_plan(
                engine, cfg, args.format)
    except CatalogueError as e:
        return _fail(str(e))


def _queue_note(status: dict[str, Any]) -> str:
    """Who works the pending tracks, when no daemon runs on this host."""
    if status["queue_waits_for_daemon"]:
        return (" (waiting for a daemon: none is running; start `genred run`, or run "
                "`genred scan` on the folders)")
    alive = sum(1 for w in status["workers"] if w["alive"])
    if status["queue"] and not status["daemon"]["running"] and alive:
        return f" (worked by {alive} live worker(s); no daemon runs on this host)"
    return ""


def _retrain_now(engine: Engine, cfg: Config, fmt: str) -> int:
    from dataclasses import asdict

    from daemon.retrain import FAILED, PROMOTED
    from daemon.status import running_pid

    outcome = _retrain_interruptibly(engine, cfg)
    if outcome is None:
        print("genred: retrain interrupted; recorded as failed, the active model is unchanged",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    text = fmt != "json"
    if text:
        print(outcome.summary())
    finish: dict[str, Any] = {}
    if outcome.decision == PROMOTED and outcome.requeued:
        pid = running_pid(engine)
        if pid is not None:
            finish = {"left_to_daemon": pid}
            if text:
                print(f"{outcome.requeued} track(s) queued; the running daemon (pid {pid}) "
                      "reclassifies them with the new model")
        else:
            finish = _reclassify(engine, cfg, text)
    if not text:
        data = asdict(outcome)
        data.pop("metrics")
        _print_json({**data, **finish})
    return EXIT_FAILED if outcome.decision == FAILED else 0


def _reclassify(engine: Engine, cfg: Config, text: bool) -> dict[str, Any]:
    """No daemon runs: classify the queued tracks with the new model now (a progress bar
    on a terminal); returns {"reclassified": n, "changed_genre": m}."""
    from tqdm import tqdm

    from classifier.predict import Classifier
    from classifier.store import ModelStore
    from daemon.worker import Worker
    from storage.catalogue import pending_paths
    from storage.query import predicted_genres

    paths = pending_paths(engine)
    before = predicted_genres(engine, paths)
    if text:
        print(f"no daemon is running: reclassifying {len(paths)} track(s) with the new model")
    classifier = Classifier.load(cfg.model or None, store=ModelStore(cfg.model_store_path),
                                 clips_per_track=cfg.clips_per_track)
    policy = None
    if cfg.write_tags:
        from storage.tagging import policy_from

        policy = policy_from(cfg)
    with tqdm(total=len(paths), unit="track", disable=not (text and sys.stderr.isatty()),
              file=sys.stderr) as bar, \
            Worker(engine, classifier, cfg, tag_policy=policy, progress=bar) as worker:
        worker.process_pending()
    after = predicted_genres(engine, paths)
    changed = sum(1 for p in paths if after.get(p) != before.get(p))
    if text:
        print(f"{len(paths)} track(s) reclassified, {changed} changed genre")
    return {"reclassified": len(paths), "changed_genre": changed}


def _retrain_interruptibly(engine: Engine, cfg: Config) -> Any:
    """The retrain job in a child process; SIGTERM or Ctrl-C stops it, and the run is
    then recorded as interrupted (None is returned) instead of staying "running"."""
    import signal

    from daemon.retrain import mark_interrupted
    from daemon.retrain_child import retrain_in_child

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    mark_interrupted(engine, cfg.model_store_path)  # runs left "running" by a killed retrain
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return retrain_in_child(engine, cfg, trigger="cli")
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _retrain_plan(engine: Engine, cfg: Config, fmt: str) -> int:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelStore
    from daemon.retrain import last_trained_correction, present_labels, waiting_genres
    from daemon.scheduler import next_run

    labels = present_labels(engine)
    since = last_trained_correction(engine)
    new = sum(1 for x in labels if x.correction_id > since)
    try:
        known = read_meta(ModelStore(cfg.model_store_path).active()).labels
    except BundleError:
        known = []
    waiting = waiting_genres(labels, known, cfg.retrain.min_songs_per_genre)
    plan: dict[str, Any] = {"labels": len(labels), "new_labels": new,
            "min_new_labels": cfg.retrain.min_new_labels,
            "waiting": waiting, "min_songs_per_genre": cfg.retrain.min_songs_per_genre,
            "schedule": cfg.retrain.schedule, "next_run": next_run(engine)}
    if fmt == "json":
        _print_json(plan)
    else:
        rows = [(k.replace("_", " "), v) for k, v in plan.items()]
        rows = [(k, ", ".join(f"{g} ({n} song(s))" for g, n in v.items()) or "none")
                if k == "waiting" else (k, v) for k, v in rows]
        _print_pairs(rows)
        print("run `genred retrain --now` to retrain now")
    return 0


def models_list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.store import ModelStore

    store = ModelStore(cfg.model_store_path)
    active = store.active()
    rows: list[dict[str, Any]] = [
        {"version": b.version, "active": b.path == active, "bundled": b.bundled,
         "created_at": b.created_at, "labels": b.labels, "accuracy": b.accuracy,
         "accuracy_songs": _accuracy_songs(b.path), "parent": b.parent,
         "path": str(b.path)} for b in store.versions()]
    if args.format == "json":
        _print_json(rows)
        return 0
    print(f"  {'VERSION':<34} {'CREATED':<20} {'GENRES':>6} {'ACCURACY':>8} {'ON SONGS':>8}"
          "  PARENT")
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        songs = str(r["accuracy_songs"]) if r["accuracy_songs"] is not None else "-"
        name = str(r["version"]) + (" (starter)" if r["bundled"] else "")
        print(f"{'*' if r['active'] else ' '} {name:<34} {str(r['created_at'])[:19]:<20} "
              f"{len(r['labels']):>6} {acc:>8} {songs:>8}  {r['parent'] or '-'}")
    print("ACCURACY: on ON SONGS songs the model did not train on (test songs, or for a "
          "retrained model the songs the retrain judged it on)")
    return 0


def _accuracy_songs(path: Any) -> int | None:
    from classifier.bundle import BundleError, read_meta

    try:
        n = read_meta(path).metrics.get("n_songs")
    except BundleError:
        return None
    return int(n) if isinstance(n, int | float) else None


def models_show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound, ModelStore

    store = ModelStore(cfg.model_store_path)
    try:
        path = store.resolve(args.version)
        meta = read_meta(path)
    except (ModelNotFound, BundleError) as e:
        return _fail(str(e))
    data = {**meta.to_json(), "path": str(path), "active": path == store.active()}
    if args.format == "json":
        _print_json(data)
        return 0
    metrics = meta.metrics
    _print_pairs([
        ("version", meta.version), ("active", "yes" if data["active"] else "no"),
        ("path", str(path)), ("created", meta.created_at), ("parent", meta.parent),
        ("architecture", meta.arch), ("genres", ", ".join(meta.labels)),
        ("accuracy", metrics.get("accuracy")), ("test songs", metrics.get("n_songs")),
    ])
    for genre, scores in sorted(_per_genre(path, metrics).items()):
        f1 = scores.get("f1") if isinstance(scores, dict) else None
        print(f"  {genre:<20} f1 {f1 if f1 is None else format(f1, '.3f')}")
    return 0


def _per_genre(path: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-genre scores: from the bundle's headline metrics, else its metrics.json report."""
    if metrics.get("per_genre"):
        return dict(metrics["per_genre"])
    try:
        report = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    test = report.get("test") if isinstance(report, dict) else None
    return dict(test.get("per_genre") or {}) if isinstance(test, dict) else {}


def models_activate_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound, ModelStore
    from daemon.shared_models import share_bundle
    from storage.catalogue import register_model, requeue_for_model
    from storage.db import CatalogueError

    store = ModelStore(cfg.model_store_path)
    try:
        path = store.resolve(args.version)
        meta = read_meta(path)
        with _catalogue(cfg) as engine:
            # Queue first, then switch: a running daemon reloads on the switch and finds
            # the queue ready (it also requeues by itself whenever it loads a model).
            requeue = requeue_for_model(engine, meta.version)
            register_model(engine, meta.version, path, meta.labels, metrics=meta.metrics,
                           parent=meta.parent, active=True)
            share_bundle(engine, meta.version, path)  # for worker hosts without the store
            store.activate(args.version)
            lacking = _genres_lacking(engine, meta.labels)
    except (ModelNotFound, BundleError, CatalogueError) as e:
        return _fail(str(e))
    line = (f"active model: {meta.version} ({len(meta.labels)} genres); "
            f"{requeue.queued} track(s) queued for reclassification")
    if requeue.unqueued:
        line += (f"; {requeue.unqueued} queued track(s) it had already classified "
                 "taken off the queue")
    print(line)
    if lacking:
        print(f"warning: {meta.version} lacks genres your catalogue uses: "
              + ", ".join(f"{g} ({n})" for g, n in lacking)
              + "; their labels stay, but this model never predicts them", file=sys.stderr)
    if cfg.model:
        print(f"note: config 'model' pins {cfg.model}; the daemon uses that until you unset it")
    return 0


def _genres_lacking(engine: Engine, labels: list[str]) -> list[tuple[str, str]]:
    """(genre, what uses it) for genres of labels or predictions that ``labels`` (a
    model's, as `genres rename` shows them) lack."""
    from storage.genres import fold
    from storage.vocabulary import counts, renames

    shown = renames(engine)
    have = {fold(shown.get(g, g)) for g in labels} | {fold(g) for g in labels}
    out = []
    for key, c in sorted(counts(engine).items()):
        if key in have or not (c.labels or c.predictions):
            continue
        uses = [f"{c.labels} label(s)"] if c.labels else []
        uses += [f"{c.predictions} prediction(s)"] if c.predictions else []
        out.append((c.name, ", ".join(uses)))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def config_show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    data = cfg.effective()
    if args.format == "json":
        _print_json(data)
        return 0
    for line in _config_toml(cfg, data):
        print(line)
    return 0


def _config_toml(cfg: Config, data: dict[str, Any]) -> Iterator[str]:
    """The effective config as TOML genred would accept, each line with where it came from
    (a value from the environment names its variable)."""
    from classifier.store import ModelStore

    origins = data["origins"]
    yield (f"# effective config: defaults < {cfg.source if cfg.source != 'defaults' else 'no file'}"
           " < GENRED_* environment < flags")
    for key, value in data.items():
        if key in ("retrain", "aliases", "paths", "origins", "source"):
            continue
        note = _origin_note(key, origins[key])
        if key == "model" and value is None:
            active = ModelStore(cfg.model_store_path).active_version() or "starter"
            yield f"# model: not pinned; the daemon uses the active model ({active})"
            continue
        if key == "workers" and value == 0:
            note += f"; 0 = all cores ({cfg.worker_count})"
        yield f"{key} = {_toml_value(value)}  # {note}"
    yield "\n[retrain]"
    for key, value in data["retrain"].items():
        setting = f"retrain.{key}"
        yield f"{key} = {_toml_value(value)}  # {_origin_note(setting, origins[setting])}"
    if data["paths"]:
        yield "\n[paths]  # catalogue prefix = this host's prefix"
        for key, value in data["paths"].items():
            yield f"{json.dumps(key)} = {json.dumps(value)}"
    user = sum(1 for k in data["aliases"] if origins[f"aliases.{k}"] != "default")
    yield (f"\n[aliases]  # {len(data['aliases'])}: the built-in ones and yours, {user} of "
           "them set by the config; names match case-insensitively")
    for key, value in data["aliases"].items():
        origin = origins[f"aliases.{key}"]
        note = "" if origin == "default" else f"  # {_origin_note(key, origin)}"
        yield f"{json.dumps(key)} = {json.dumps(value)}{note}"


def _origin_note(key: str, origin: str) -> str:
    if origin == "env":
        return f"environment {'GENRED_' + key.upper().replace('.', '_')}"
    return {"default": "default", "file": "config file", "flag": "command line"}[origin]


def _retrain_line(run: dict[str, Any] | None) -> str | None:
    if run is None:
        return None
    if run["finished_at"] is None:
        return f"{run['decision']} since {run['started_at']}"
    return f"{run['decision']} at {run['finished_at']}: {run['reason']}"
