"""Run real `genred run` processes on temp folders and watch the catalogue they keep.

Everything is real: the `genred` console script of this venv, a SQLite catalogue file,
XDG folders inside tmp_path, a tiny real model bundle activated in the model store, and
an AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET (READY=1 tells the
test the daemon is watching).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).parent / "genred"
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Library:
    """A temp music folder, its catalogue, and the environment a daemon runs in."""

    root: Path
    music: Path
    db: Path
    env: dict[str, str]

    @classmethod
    def create(cls, tmp_path: Path) -> Library:
        music = tmp_path / "music"
        music.mkdir()
        home = tmp_path / "home"
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "PYTHONUNBUFFERED": "1",
        }
        for var in [v for v in env if v.startswith("GENRED_") or v == "NOTIFY_SOCKET"]:
            del env[var]
        store = home / ".local" / "share" / "genred" / "models"
        tiny_bundle(store / "tiny-v1", version="tiny-v1")
        (store / "ACTIVE").write_text("tiny-v1\n")
        return cls(tmp_path, music, tmp_path / "catalogue.db", env)

    @property
    def store(self) -> Path:
        return Path(self.env["XDG_DATA_HOME"]) / "genred" / "models"

    def genred(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GENRED), "--db", str(self.db), *args], env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        # Closed here, not left to the garbage collector (a connection sits in a reference
        # cycle): an open catalogue keeps a lazily unmounted file system (faultfs) alive.
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            conn.close()

    def track(self, path: Path) -> tuple[Any, ...] | None:
        """(id, status, size, error) of the track at ``path``."""
        found = self.rows("SELECT id, status, size, error FROM tracks WHERE path = ?",
                          str(path))
        return found[0] if found else None

    def status_of(self, path: Path) -> str | None:
        track = self.track(path)
        return track[1] if track else None

    def predictions(self, path: Path) -> list[tuple[Any, ...]]:
        """(model_version, genre, current) of every prediction of the track at ``path``."""
        return self.rows(
            "SELECT p.model_version, p.genre, p.current FROM predictions p "
            "JOIN tracks t ON t.id = p.track_id WHERE t.path = ? ORDER BY p.id", str(path))


class Daemon:
    """A `genred run` subprocess with a NOTIFY_SOCKET the test listens on."""

    def __init__(self, library: Library, *extra: str, settle: float = 1.0,
                 new_session: bool = False, watch: bool = True,
                 db: str | None = None) -> None:
        self.library = library
        self.address = f"genred-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address)
        self.messages: list[str] = []
        self.log = library.root / f"daemon-{self.address[-6:]}.log"
        env = {**library.env, "NOTIFY_SOCKET": "@" + self.address}
        args = [str(GENRED), "--db", db or str(library.db), "run",
                *(["--watch", str(library.music)] if watch else []),
                "--settle-seconds", str(settle), "--clips-per-track", "1", "--workers", "2",
                *extra]
        with self.log.open("w") as out:
            # new_session: its own process group, as under systemd or a terminal's Ctrl-C
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=new_session)

    def wait_message(self, prefix: str, timeout: float = 60) -> str:
        """Wait for a notification containing a line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if any(line.startswith(prefix) for line in message.splitlines()):
                    return message
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.output()}")
            self.sock.settimeout(0.5)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {prefix} from the daemon in {timeout} s:\n{self.output()}")

    def ready(self) -> Daemon:
        self.wait_message("READY=1")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float = 60, after: int = 0) -> int:
        """Wait for ``text`` in the daemon's log past offset ``after``; returns the offset
        just past it (to wait for the next occurrence)."""
        def found() -> int:
            at = self.output().find(text, after)
            return at + len(text) if at >= 0 else 0

        def seen() -> int:
            if self.proc.poll() is not None and not found():
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before "
                                     f"logging {text!r}:\n{self.output()}")
            return found()

        return wait_for(seen, timeout, f"{text!r} in the daemon's log")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took). ``timeout`` is a hang guard (a
        deadlock never ends), not a speed check: an idle daemon exits in well under a
        second (benchmarks/bench_daemon.py measures it), a loaded machine may take longer."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"still running {timeout} s after SIGTERM:\n{self.output()}"
            ) from None
        finally:
            self.sock.close()
        return code, time.monotonic() - start

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.sock.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.sock.close()
