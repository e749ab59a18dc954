"""The retrain job in a child process, so it never fights the daemon's inference threads
for the cores, a crash or an out-of-memory kill cannot take the daemon with it, and every
byte it used is returned to the system when it ends.

The parent (the daemon's scheduler thread, or `genred retrain --now`) starts the run row,
then runs ``python -m daemon.retrain_child`` with the effective config as JSON on stdin.
The child sets its own torch threads (``retrain.threads``; 0 = all cores but one, so
inference keeps a core), runs :func:`daemon.retrain.retrain` on that row and exits. If the
child dies (a signal, e.g. the kernel's OOM killer, or a crash), the parent records the run
as failed with the cause and carries on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import Engine

from daemon.config import Config, RetrainConfig
from daemon.retrain import RetrainOutcome, running
from storage import training_runs

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds a stopped child gets to record its run before it is killed

_child_lock = threading.Lock()
_child: subprocess.Popen[bytes] | None = None


def config_json(cfg: Config) -> str:
    data = asdict(cfg)
    data["origins"] = dict(cfg.origins)
    data["aliases"] = dict(cfg.aliases)
    data["genre_tree"] = dict(cfg.genre_tree)
    return json.dumps(data)


def config_from_json(text: str) -> Config:
    data = json.loads(text)
    retrain = RetrainConfig(**data.pop("retrain"))
    for f in fields(Config):
        if isinstance(f.default, tuple) and f.name in data:
            data[f.name] = tuple(data[f.name])
    return Config(**data, retrain=retrain)


def torch_threads(cfg: Config) -> int:
    if cfg.retrain.threads > 0:
        return cfg.retrain.threads
    return max(1, (os.cpu_count() or 1) - 1)


def child_pid() -> int | None:
    """The pid of the retrain child running now, if any (for tests and shutdown)."""
    with _child_lock:
        return _child.pid if _child is not None else None


def stop_child() -> None:
    """Ask the running child (if any) to stop; it records its run as interrupted."""
    with _child_lock:
        if _child is not None and _child.poll() is None:
            _child.send_signal(signal.SIGTERM)


def retrain_in_child(engine: Engine, cfg: Config, trigger: str) -> RetrainOutcome:
    """Run the job in a child process and return what it recorded. A KeyboardInterrupt
    (Ctrl-C, or SIGTERM turned into one) stops the child, records the run as interrupted
    and propagates."""
    global _child
    run_id = training_runs.start_run(engine, trigger, None)
    env = {**os.environ, "GENRED_TORCH_THREADS": str(torch_threads(cfg))}
    cmd = [sys.executable, "-m", "daemon.retrain_child", str(run_id), trigger]
    with running():
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
        with _child_lock:
            _child = proc
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(config_json(cfg).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it died at once; its exit status says why
            code = proc.wait()
        except KeyboardInterrupt:
            _stop(proc)
            training_runs.mark_run_failed(engine, run_id,
                                          "interrupted (the process stopped mid-run)")
            raise
        finally:
            with _child_lock:
                _child = None
    if code != 0:
        cause = (f"killed by {signal.Signals(-code).name}" if code < 0
                 else f"exited with status {code}")
        if code == -signal.SIGKILL:
            cause += " (out of memory? the kernel's OOM killer sends it)"
        if training_runs.mark_run_failed(engine, run_id, f"the retrain process {cause}"):
            log.error("retrain run %d failed: the retrain process %s", run_id, cause)
    run = training_runs.run_record(engine, run_id)
    assert run is not None
    return RetrainOutcome.from_record(run)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    """Child entry: ``run_id trigger``, the config as JSON on stdin."""
    from daemon.cli import setup_logging
    from daemon.retrain import retrain
    from storage.db import open_catalogue

    run_id, trigger = int(argv[0]), argv[1]
    cfg = config_from_json(sys.stdin.read())
    setup_logging(cfg.log_level)
    if trigger == "schedule":
        os.nice(10)  # the nightly job yields to the daemon's own work
    import torch

    from classifier.predict import set_torch_threads

    set_torch_threads()  # GENRED_TORCH_THREADS, from retrain.threads (torch_threads above)
    log.info("retrain run %d: its own process (pid %d), %d torch thread(s), nice %d",
             run_id, os.getpid(), torch.get_num_threads(), os.nice(0))

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    engine = open_catalogue(cfg.db_url)
    try:
        outcome = retrain(engine, cfg, trigger=trigger, run_id=run_id)
    except KeyboardInterrupt:
        training_runs.mark_run_failed(engine, run_id, "interrupted (the process stopped mid-run)")
        return 130
    finally:
        engine.dispose()
    return 1 if outcome.decision == training_runs.FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
