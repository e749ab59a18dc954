"""Paths as the user gives them on the command line and sees them in a terminal.

- ``shown(path)`` (from ``storage.names``): a file name made safe to print, escapes for
  control characters and bytes that are not UTF-8. Table rows, messages and log lines
  use it; JSON and CSV output stay lossless instead (see ``daemon.cli_catalogue``).
- ``require_existing(paths)``: the one rule for a path argument that does not exist, in
  every command: ``genred: no such file or folder: PATH`` on stderr, one line per path,
  and exit status 2 (``EXIT_USAGE``). No database or model is opened before it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable

from storage.names import shown

EXIT_USAGE = 2
__all__ = ["EXIT_USAGE", "missing", "missing_message", "require_existing", "shown"]


def missing(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The paths that do not exist (``ENOENT``/``ENOTDIR``; a broken symlink counts as
    missing). A path that exists but cannot be looked at (permissions) is not missing: the
    command reports it itself."""
    gone = []
    for path in paths:
        try:
            os.stat(os.path.expanduser(os.fspath(path)))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                gone.append(os.fspath(path))
    return gone


def missing_message(path: str | os.PathLike[str]) -> str:
    """The one line for a path that does not exist."""
    return f"no such file or folder: {shown(path)}"


def require_existing(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """True when every path exists; otherwise print ``genred: <missing_message>`` for each
    missing one on stderr and return False: the caller returns ``EXIT_USAGE``."""
    gone = missing(paths)
    for path in gone:
        print(f"genred: {missing_message(path)}", file=sys.stderr)
    return not gone
