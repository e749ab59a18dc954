"""`genred run` around the Daemon: the watched folders checked before the catalogue is
opened, signals relayed to the daemon once it exists (a stop that comes earlier is kept),
and on the way out a retrain still running abandoned, so the process ends now.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from sqlalchemy import Engine

from daemon.config import Config
from daemon.roots import watch_roots
from daemon.service import Daemon

log = logging.getLogger(__name__)


class _Relay:
    """Signal callbacks that reach the daemon once it exists (a stop before that is kept)."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.stop_signal: int | None = None

    def stop(self, signum: int) -> None:
        if self.daemon is None:
            self.stop_signal = signum
        else:
            self.daemon.request_stop(signum)

    def reload(self) -> None:
        if self.daemon is not None:
            self.daemon.request_reload()

    def started(self) -> bool:
        return self.daemon is not None and self.daemon.started

    def attach(self, daemon: Daemon) -> None:
        self.daemon = daemon
        if self.stop_signal is not None:
            daemon.request_stop(self.stop_signal)


def run_daemon(cfg: Config, reload_config: Callable[[], Config] | None = None,
               classify: bool = True) -> int:
    """`genred run`: open the catalogue, run until SIGTERM/SIGINT, return the exit code."""
    from daemon.signals import SignalInbox
    from storage.db import open_catalogue

    watch_roots(cfg)  # a folder that is not there ends it before the catalogue is touched
    relay = _Relay()
    with SignalInbox(relay.stop, relay.reload, relay.started):
        engine = open_catalogue(cfg.db_url, cfg.busy_timeout_seconds)
        daemon = Daemon(cfg, engine, reload_config, classify)
        relay.attach(daemon)
        code = daemon.run()
    _abandon_retrain(engine, code)
    engine.dispose()
    return code


def _abandon_retrain(engine: Engine, code: int) -> None:
    """A retrain still running in the scheduler's thread would keep the process alive
    until it finishes (minutes): record it as interrupted and exit now. The model store is
    untouched (a candidate is only promoted by a finished run)."""
    from daemon.retrain import in_progress, mark_interrupted
    from daemon.retrain_child import stop_child

    if not in_progress():
        return
    stop_child()  # the child records its run as interrupted and exits
    log.warning("stopping in the middle of a retrain; it will run again at the next "
                "scheduled time")
    mark_interrupted(engine)
    engine.dispose()
    logging.shutdown()
    os._exit(code)
