"""Verbs for catalogues shared by several hosts: worker, migrate.

Heavy modules are imported inside the handlers so ``genred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from daemon.config import Config, flag_type

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    worker = sub.add_parser(
        "worker", parents=[common], help="classify queued tracks of a shared catalogue "
        "(any host)",
        description="Claim pending tracks from the catalogue (--db, usually PostgreSQL), "
        "classify them with the catalogue's active model and record the results. Run one "
        "per host next to the one `genred run`; stop with SIGTERM/Ctrl-C.")
    worker.add_argument("--workers", dest="cfg_workers", type=flag_type("workers"), default=None,
                        metavar="N",
                        help="decoding processes (default: all cores)")
    worker.add_argument("--clips-per-track", dest="cfg_clips_per_track",
                        type=flag_type("clips_per_track"),
                        default=None, metavar="K", help="30 s clips averaged per track")
    worker.add_argument("--lease-seconds", dest="cfg_lease_seconds",
                        type=flag_type("lease_seconds"), default=None,
                        metavar="S", help="how long a claim outlives a silent worker "
                        "(default 60)")
    worker.set_defaults(handler=worker_cmd)
    migrate = sub.add_parser(
        "migrate", parents=[common], help="copy a catalogue to another database "
        "(e.g. SQLite to PostgreSQL)",
        description="Copy every track, prediction and correction history, model version, "
        "stored bundle, retrain run and tag backup from one catalogue to an empty one, "
        "then check the counts. The source is only read.")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL",
                         help="the catalogue to copy (SQLAlchemy URL or SQLite path)")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL",
                         help="an empty database (e.g. postgresql://user@host/genred)")
    migrate.add_argument("--format", choices=["table", "json"], default="table")
    migrate.set_defaults(handler=migrate_cmd)


def _fail(message: str) -> int:
    print(f"genred: {message}", file=sys.stderr)
    return EXIT_FAILED


def worker_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.service import DaemonError
    from daemon.worker_host import run_worker
    from storage.db import CatalogueError

    try:
        return run_worker(cfg)
    except (DaemonError, CatalogueError) as e:
        return _fail(str(e))


def _url(value: str) -> str:
    if "://" in value:
        return value
    from pathlib import Path

    return f"sqlite:///{Path(value).expanduser().resolve()}"


def migrate_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from storage.db import CatalogueError
    from storage.transfer import TransferError, copy_catalogue

    try:
        counts = copy_catalogue(_url(args.source), _url(args.target))
    except (CatalogueError, TransferError) as e:
        return _fail(str(e))
    if args.format == "json":
        print(json.dumps(counts, indent=2))
        return 0
    for table, n in counts.items():
        print(f"{table:<16} {n:>9}")
    print(f"copied; counts match. Point every host's config at it: db = \"{args.target}\"")
    return 0
