"""What the decode pool's server process loads before it forks any decode process.

``daemon.decoding.new_pool`` names this module as multiprocessing's forkserver preload, so
the decoding code and ONNX Runtime (a backbone model's decode processes compute the track
embedding; they never import torch) are imported once and every decode process starts with
them loaded, their pages shared. The server also ignores SIGTERM (multiprocessing already
makes it ignore SIGINT): a SIGTERM sent to the daemon's whole process group (``kill -TERM
-PGID``, systemd's ``KillMode=control-group``) would otherwise kill it, and multiprocessing
reads a dead server as the death of every decode process it forked — a broken pool, and
files retried or recorded as crashed while the daemon is finishing its work. The server
still ends with the daemon: it exits when the daemon's end of its pipe closes. Decode
processes forked from it inherit the ignored signal from their first instant.

Importing this module anywhere but in that server changes no signal handling.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing import forkserver
from types import FrameType

# Each decode process builds its own ONNX Runtime session on its first track (a session's
# threads would not survive a fork); the modules are loaded here once.
import onnxruntime  # noqa: F401

import classifier.musicnn_ort  # noqa: F401 - the backbone's engine, loaded here once
import daemon.decoding  # noqa: F401 - loaded here once, shared by every decode process


def _imported_by_the_server() -> bool:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _imported_by_the_server():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
