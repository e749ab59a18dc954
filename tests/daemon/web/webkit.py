"""A real catalogue made of real generated audio, and real `genred web` processes on it.

``WebLibrary.create`` writes tracks with ``tests.audiogen`` (several formats, one folder per
"album"), activates the tiny test model in the model store and runs `genred scan`;
``WebServer`` starts `genred web --port 0` (the OS picks a free port; the server prints
the address it got) and stops it with SIGTERM. ``request`` is a plain urllib client that
returns every status instead of raising.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.audiogen import make_track
from tests.daemon.daemon_helpers import GENRED, Library

# folder -> [(file name, style)]: "Album A" has an odd one out, "Mixed" several formats.
LAYOUT = {
    "Album A": [("01 one.mp3", "Drone"), ("02 two.mp3", "Drone"), ("03 three.mp3", "Drone"),
                ("04 odd.mp3", "Chirp")],
    "Album B": [("01 b.flac", "Pulse"), ("02 b.flac", "Pulse"), ("03 b.flac", "Pulse")],
    "Mixed": [("lossless.alac.m4a", "Noise"), ("vorbis.ogg", "Chirp"), ("wave.wav", "Pulse"),
              ("gone.mp3", "Drone")],
}


@dataclass
class WebLibrary:
    lib: Library

    @classmethod
    def create(cls, tmp_path: Path, seconds: float = 12.0,
               layout: dict[str, list[tuple[str, str]]] | None = None) -> WebLibrary:
        lib = Library.create(tmp_path)
        for n, (folder, files) in enumerate((layout or LAYOUT).items()):
            for m, (name, style) in enumerate(files):
                make_track(lib.music / folder / name, style, seconds, seed=10 * n + m)
        scan = lib.genred("scan", "--workers", "1", str(lib.music))
        assert scan.returncode == 0, scan.stderr
        return cls(lib)

    @property
    def env(self) -> dict[str, str]:
        return self.lib.env

    def path(self, relative: str) -> Path:
        return self.lib.music / relative

    def query(self, *args: str) -> list[dict[str, Any]]:
        proc = self.lib.genred("query", "--format", "json", *args)
        assert proc.returncode == 0, proc.stderr
        rows: list[dict[str, Any]] = json.loads(proc.stdout)
        return rows

    def row(self, relative: str) -> dict[str, Any]:
        found = self.query("--path", str(self.path(relative)))
        assert len(found) == 1, found
        return found[0]

    def track_id(self, relative: str) -> int:
        found = self.lib.rows("SELECT id FROM tracks WHERE path = ?", str(self.path(relative)))
        assert found, relative
        return int(found[0][0])


class WebServer:
    """`genred web` (or any verb that serves the page) as a subprocess."""

    def __init__(self, lib: Library, *args: str, env: dict[str, str] | None = None,
                 verb: tuple[str, ...] = ("web", "--port", "0")) -> None:
        self.proc = subprocess.Popen(
            [str(GENRED), "--db", str(lib.db), *verb, *args], env=env or lib.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_url(timeout=120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _wait_url(self, timeout: float) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("no 'serving' line in time:\n" + "".join(self.output)) \
                    from None
            if line is None:
                raise AssertionError(f"genred exited ({self.proc.wait()}):\n"
                                     + "".join(self.output))
            if line.startswith("genred web: serving "):
                return line.split()[-1].rstrip("/")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("still running 30 s after SIGTERM") from None
        return self.proc.returncode


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the test sees the 303 itself


_opener = urllib.request.build_opener(_NoRedirect)


def request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None
            = None, raw: bytes | None = None) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with _opener.open(req, timeout=120) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                         resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())
