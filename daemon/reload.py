"""SIGHUP: re-read the config and apply it to a running daemon.

What changes at once: the watch list (folders added are walked, folders dropped are no
longer watched; their tracks stay as they are), ``settle_seconds``, ``rescan_hours``, the
tag settings, ``clips_per_track``, a pinned ``model``, the ``[retrain]`` table (the
schedule is applied to the job store) and ``log_level``. What needs a restart
(:data:`RESTART_KEYS`) is logged and kept as it was. A config that does not load is
reported and the running one kept: a typo never stops the daemon.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import sdnotify
from daemon.config import Config, ConfigError
from daemon.queue_runner import DaemonError

if TYPE_CHECKING:
    from daemon.service import Daemon

log = logging.getLogger(__name__)

# Settings a reload cannot change under a running daemon (they take effect at a restart).
RESTART_KEYS = ("db", "model_store", "cache", "workers", "busy_timeout_seconds")


def _load(daemon: Daemon) -> tuple[Config, list[str]] | None:
    from daemon import scheduler

    if daemon.reload_config is None:
        log.warning("SIGHUP: this daemon was started without a config to re-read")
        return None
    try:
        new = daemon.reload_config()
        scheduler.cron_trigger(new.retrain.schedule)
        if not new.watch:
            raise DaemonError("no folders to watch (config key 'watch')")
    except (ConfigError, DaemonError, ValueError) as e:
        log.error("config not reloaded, the running config is kept: %s", e)
        return None
    return new, [str(Path(folder).expanduser().resolve()) for folder in new.watch]


def reload_daemon(daemon: Daemon) -> None:
    """Apply the re-read config to ``daemon`` (see the module docstring)."""
    from daemon import scheduler

    loaded = _load(daemon)
    if loaded is None:
        return
    new, roots = loaded
    old = daemon.cfg
    sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    changed = [f.name for f in fields(Config) if f.name not in ("source", "origins")
               and getattr(new, f.name) != getattr(old, f.name)]
    for key in (k for k in RESTART_KEYS if k in changed):
        log.warning("config key '%s' changed: it takes effect when genred run restarts", key)
    new = replace(new, **{k: getattr(old, k) for k in RESTART_KEYS})
    if "watch" in changed:
        _rewatch(daemon, roots)
    daemon.tracker.settle_seconds = new.settle_seconds
    if new.rescan_hours != old.rescan_hours:
        daemon.rescan_within(new.rescan_hours)
    daemon.worker.reconfigure(new)
    daemon.tags.reconfigure(new)
    if daemon.scheduler is not None:
        scheduler.apply_schedule(daemon.scheduler, new.retrain.schedule)
    logging.getLogger().setLevel(new.log_level)
    daemon.cfg = new
    log.info("config reloaded from %s: %s", new.source,
             ", ".join(k for k in changed if k not in RESTART_KEYS) or "nothing changed")
    daemon.status_changed()
    sdnotify.notify("READY=1\n" + daemon.status_line())


def _rewatch(daemon: Daemon, roots: list[str]) -> None:
    from daemon.status import WATCH_KEY
    from storage.catalogue import set_state

    added, removed = daemon.watcher.set_roots(roots)
    daemon.reconciler.roots = daemon.watcher.roots
    daemon.roots = daemon.watcher.roots
    for root in removed:
        daemon.tracker.discard_under(root)
        log.info("no longer watching %s", root)
    for root in added:
        if root not in daemon.watcher.detached:
            log.info("now watching %s", root)
            daemon.rescan_soon(root)
    set_state(daemon.engine, WATCH_KEY, json.dumps(daemon.watcher.roots))
