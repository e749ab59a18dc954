"""Verbs: run, status, retrain, models list|show|activate, config show.

Heavy modules (torch, SQLAlchemy, watchdog, APScheduler) are imported inside the handlers so
``genred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon.cli_models import config_show_cmd, models_activate_cmd, models_list_cmd, models_show_cmd
from daemon.cli_output import catalogue as _catalogue
from daemon.cli_output import fail as _fail
from daemon.cli_output import print_json as _print_json
from daemon.cli_output import print_pairs as _print_pairs
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


def run_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.cli import config_loader
    from daemon.launch import run_daemon
    from daemon.service import DaemonError
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
        ("active model", _model_line(status["active_model"])),
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
    needed = max(1, cfg.retrain.min_new_labels)
    trainable = any(x.genre not in waiting for x in labels)
    would = new >= needed and trainable
    plan: dict[str, Any] = {"labels": len(labels), "new_labels": new,
            "min_new_labels": cfg.retrain.min_new_labels,
            "waiting": waiting, "min_songs_per_genre": cfg.retrain.min_songs_per_genre,
            "schedule": cfg.retrain.schedule, "next_run": next_run(engine),
            "would_train": would}
    if fmt == "json":
        _print_json(plan)
        return 0
    rows = [(k.replace("_", " "), v) for k, v in plan.items() if k != "would_train"]
    rows = [(k, ", ".join(f"{g} ({n} song(s))" for g, n in v.items()) or "none")
            if k == "waiting" else (k, v) for k, v in rows]
    if plan["next_run"] is None:
        rows = [(k, "not scheduled: no daemon is running (`genred run` schedules it)")
                if k == "next run" else (k, v) for k, v in rows]
    _print_pairs(rows)
    if would:
        print("a run now would train a candidate: `genred retrain --now`")
    elif new < needed:
        print(f"a run now would skip: {new} new label(s) since the last training run, "
              f"{needed} needed (retrain.min_new_labels)")
    else:
        print("a run now would skip: every labelled genre is waiting for "
              f"{cfg.retrain.min_songs_per_genre} songs (retrain.min_songs_per_genre)")
    return 0


def _retrain_line(run: dict[str, Any] | None) -> str | None:
    if run is None:
        return None
    if run["finished_at"] is None:
        return f"{run['decision']} since {run['started_at']}"
    return f"{run['decision']} at {run['finished_at']}: {run['reason']}"


def _model_line(model: dict[str, Any]) -> str | None:
    """The active model's version, "(the bundled starter)" when it is the starter."""
    if model.get("starter") and model.get("version"):
        return f"{model['version']} (the bundled starter)"
    return model.get("version")
