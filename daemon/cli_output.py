"""Standard output that knows when writing it failed.

``genred query > /dev/full``, a pipe into a full disk, a terminal that went away: the
``OSError`` comes out of whatever ``print`` or ``write`` was running, anywhere in a verb.
``guard_stdout`` puts ``sys.stdout`` on a raw writer that remembers the error it raised,
so the CLI's entry point can tell "the output could not be written" (one line, exit 1)
from any other ``OSError``, and then drop what is still buffered so the interpreter's
final flush does not fail again.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from sqlalchemy import Engine

    from daemon.config import Config


class _Fd1(io.RawIOBase):
    """File descriptor 1, remembering the last write that failed."""

    failed: OSError | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def isatty(self) -> bool:
        return os.isatty(1)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view, done = memoryview(data), 0
        try:
            while done < len(view):  # all of it: unbuffered (python -u) has no retry above
                done += os.write(1, view[done:])
        except OSError as e:
            _Fd1.failed = e
            raise
        return done


def guard_stdout() -> None:
    """Put ``sys.stdout`` (when it is file descriptor 1, as for a real `genred`) on
    :class:`_Fd1`, keeping its encoding, error handler and line buffering."""
    out = sys.stdout
    if not isinstance(out, io.TextIOWrapper):  # captured (pytest), or replaced already
        return
    try:
        if out.fileno() != 1:
            return
    except (OSError, ValueError):
        return
    out.flush()
    # PYTHONUNBUFFERED / -u: the text layer writes straight to the raw file; keep it so.
    unbuffered = isinstance(out.buffer, io.RawIOBase)
    raw = _Fd1()
    sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw),
                                  encoding=out.encoding, errors=out.errors,
                                  line_buffering=out.line_buffering,
                                  write_through=unbuffered or out.write_through)


def output_failed(error: BaseException) -> bool:
    """True when ``error`` is (or was caused by) a failed write of the standard output."""
    seen: BaseException | None = error
    while seen is not None:
        if seen is _Fd1.failed:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def discard_output() -> None:
    """Point file descriptor 1 at /dev/null: what is still buffered goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def open_engine(cfg: Config) -> Engine | None:
    """The catalogue; its faults (CatalogueError) reach the CLI entry, which prints them."""
    from storage.db import open_catalogue

    return open_catalogue(cfg.db_url, cfg.busy_timeout_seconds)


def on_catalogue(verb: Callable[[argparse.Namespace, Config, Engine], int]
                 ) -> Callable[[argparse.Namespace, Config], int]:
    """The handler of a verb on ``args.paths`` and the catalogue: a path that does not
    exist is the usage error (exit 2, nothing opened), then ``verb(args, cfg, engine)``
    (exit 1 when the catalogue cannot be opened)."""
    from daemon.userpaths import EXIT_USAGE, require_existing

    def handler(args: argparse.Namespace, cfg: Config) -> int:
        if not require_existing(args.paths):
            return EXIT_USAGE
        engine = open_engine(cfg)
        if engine is None:
            return 1  # EXIT_FAILED
        return verb(args, cfg, engine)

    handler.__name__ = verb.__name__
    return handler


def counts_line(counts: dict[str, int], nothing: str) -> str:
    """``3 skipped, 2 written``: what a verb did to how many files, or ``nothing``."""
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or nothing


def write_json(text: str) -> None:
    """JSON text on stdout, lossless: a path byte that is not UTF-8 (a lone surrogate)
    goes out as the JSON escape ``\\udcff``, which ``json.loads`` turns back into it."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace") + b"\n")
    sys.stdout.buffer.flush()


def fail(message: str) -> int:
    print(f"genred: {message}", file=sys.stderr)
    return 1  # EXIT_FAILED


@contextmanager
def catalogue(cfg: Config) -> Iterator[Engine]:
    from storage.db import open_catalogue

    engine = open_catalogue(cfg.db_url, cfg.busy_timeout_seconds)
    try:
        yield engine
    finally:
        engine.dispose()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_pairs(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {'-' if value is None or value == '' else value}")
