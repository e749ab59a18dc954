"""What `genred status` reports, read from the catalogue without a running daemon.

The daemon writes small facts into the State table (keys below); whether it is running is
checked with ``os.kill(pid, 0)`` on the pid it recorded, on this host.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.config import Config

PID_KEY, HOST_KEY, STARTED_KEY = "daemon.pid", "daemon.host", "daemon.started"
HEARTBEAT_KEY, WATCH_KEY, LAST_SCAN_KEY = "daemon.heartbeat", "daemon.watch", "last_scan"


def stamp() -> str:
    """Now, as the daemon's time facts are stored (UTC, ISO 8601, whole seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_start(engine: Engine, roots: list[str]) -> None:
    """The daemon that just claimed this catalogue: its pid, host, start and folders."""
    from storage.catalogue import set_state

    now = stamp()
    for key, value in ((PID_KEY, str(os.getpid())), (HOST_KEY, socket.gethostname()),
                       (STARTED_KEY, now), (HEARTBEAT_KEY, now), (WATCH_KEY, json.dumps(roots))):
        set_state(engine, key, value)


def _alive(pid: int) -> bool:
    """Is ``pid`` a live genred process? After a crash and a reboot the recorded pid may
    belong to something else: where /proc is readable, its command line must name genred."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (or not ours to read): trust the signal check
    return b"genred" in cmdline


def running_pid(engine: Engine) -> int | None:
    """The pid of the daemon serving this catalogue on this host, if it is alive."""
    from storage.catalogue import get_state

    pid, host = get_state(engine, PID_KEY), get_state(engine, HOST_KEY)
    if not pid or not pid.isdigit() or host != socket.gethostname():
        return None
    return int(pid) if _alive(int(pid)) else None


def read_status(engine: Engine, cfg: Config) -> dict[str, Any]:
    """What `genred status` shows, as plain data."""
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelStore
    from daemon.scheduler import next_run
    from storage.catalogue import get_state
    from storage.query import stats

    pid = running_pid(engine)
    try:
        store = ModelStore(cfg.model_store_path)
        meta = read_meta(store.active())
        model: dict[str, Any] = {"version": meta.version, "labels": meta.labels,
                                 "starter": store.active_version() is None}
    except BundleError as e:
        model = {"version": None, "error": str(e), "labels": []}
    counts = stats(engine).get("status", {})
    nxt = next_run(engine)
    workers = _workers(engine, cfg)
    pending = int(counts.get("pending", 0))
    return {
        "daemon": {"running": pid is not None, "pid": pid,
                   "started": get_state(engine, STARTED_KEY) if pid else None,
                   "heartbeat": get_state(engine, HEARTBEAT_KEY),
                   "watch": json.loads(get_state(engine, WATCH_KEY) or "[]")},
        "queue": pending,
        # Pending work with no daemon here and no live worker (any host) to do it:
        # `genred status` says so.
        "queue_waits_for_daemon": pid is None and pending > 0 and not any(
            w["alive"] for w in workers),
        "tracks": counts,
        "last_scan": get_state(engine, LAST_SCAN_KEY),
        "active_model": model,
        "last_retrain": _last_retrain(engine),
        "next_retrain": nxt.isoformat() if nxt else None,
        "workers": workers,
    }


def _workers(engine: Engine, cfg: Config) -> list[dict[str, Any]]:
    """The processes working the queue that have not stopped (a killed one stays listed,
    marked not alive, until a day of silence)."""
    from storage.workqueue import list_workers

    return [{"id": w.id, "kind": w.kind, "host": w.host, "pid": w.pid,
             "started": w.started_at.isoformat(timespec="seconds"),
             "heartbeat": w.heartbeat_at.isoformat(timespec="seconds"),
             "heartbeat_age": round(w.heartbeat_age, 1),
             "alive": w.heartbeat_age <= cfg.lease_seconds,
             "tracks_done": w.tracks_done, "model": w.model_version}
            for w in list_workers(engine)]


def _last_retrain(engine: Engine) -> dict[str, Any] | None:
    from storage.training_runs import run_record

    run = run_record(engine)
    if run is None:
        return None
    return {k: run[k] for k in ("decision", "reason", "trigger", "started_at", "finished_at",
                                "base_model", "new_model", "old_accuracy", "new_accuracy")}
