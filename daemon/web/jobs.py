"""The "retrain now" button: the retrain job (``daemon.retrain.retrain``, the one the
scheduler and ``genred retrain --now`` run) in a background thread, one at a time, with
its progress: the log lines the job writes while it runs (epochs, hold-out accuracy).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from daemon.config import Config

log = logging.getLogger(__name__)

EPOCH = re.compile(r"^epoch (\d+)/(\d+)")
MESSAGES_KEPT = 40


class RetrainRunning(Exception):
    """A retrain is already running (here, in the daemon, or in `genred retrain --now`)."""


@dataclass
class JobState:
    state: str = "idle"  # idle | running | finished
    started: float | None = None
    finished: float | None = None
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=MESSAGES_KEPT))
    epoch: tuple[int, int] | None = None
    outcome: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"state": self.state, "started": self.started, "finished": self.finished,
                "elapsed": round(end - self.started, 1) if self.started else None,
                "epoch": list(self.epoch) if self.epoch else None,
                "messages": list(self.messages), "outcome": self.outcome}


class _Capture(logging.Handler):
    """Log records of the job's thread become its progress messages."""

    def __init__(self, job: RetrainJob, thread_id: int) -> None:
        super().__init__(logging.INFO)
        self.job, self.thread_id = job, thread_id

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        try:
            text = record.getMessage().splitlines()[0][:300]
        except Exception:  # a broken log call must not break the job
            return
        self.job.note(text)


class RetrainJob:
    """At most one retrain started from the page at a time; ``start`` refuses a second."""

    def __init__(self, engine: Engine, cfg: Config) -> None:
        self.engine, self.cfg = engine, cfg
        self._lock = threading.Lock()
        self.status = JobState()

    def note(self, text: str) -> None:
        with self._lock:
            self.status.messages.append(text)
            match = EPOCH.match(text)
            if match:
                self.status.epoch = (int(match[1]), int(match[2]))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.status.as_json()

    def start(self) -> dict[str, Any]:
        """Start the job in a thread; RetrainRunning when one already runs."""
        from daemon import retrain
        from storage.review import running_training

        with self._lock:
            if self.status.state == "running" or retrain.in_progress():
                raise RetrainRunning("a retrain is already running")
            retrain.mark_interrupted(self.engine, self.cfg.model_store_path)
            if running_training(self.engine):
                raise RetrainRunning("a retrain is already running in another genred process")
            self.status = JobState(state="running", started=time.time())
            thread = threading.Thread(target=self._run, name="genred-web-retrain",
                                      daemon=True)
            thread.start()
            return self.status.as_json()

    def _run(self) -> None:
        from dataclasses import asdict

        from daemon.retrain import retrain

        capture = _Capture(self, threading.get_ident())
        root = logging.getLogger()
        root.addHandler(capture)  # at log_level WARNING, only warnings show as progress
        outcome: dict[str, Any]
        try:
            result = retrain(self.engine, self.cfg, trigger="web")
            outcome = asdict(result)
            outcome.pop("metrics", None)
            outcome["summary"] = result.summary()
        except Exception as e:  # the job records its own failures; this is the rest
            log.exception("retrain from the web page failed")
            outcome = {"decision": "failed", "reason": f"{type(e).__name__}: {e}",
                       "summary": f"failed: {e}"}
        finally:
            root.removeHandler(capture)
        with self._lock:
            self.status.state = "finished"
            self.status.finished = time.time()
            self.status.outcome = outcome
