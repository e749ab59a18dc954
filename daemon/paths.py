"""``[paths]``: hosts that mount the library (or the model store) at other places.

The catalogue stores paths as the host running ``genred run`` sees them. A worker host maps
each through its config's table, longest catalogue prefix first::

    [paths]
    "/srv/music" = "/mnt/nas/music"

so ``/srv/music/Jazz/a.flac`` is read as ``/mnt/nas/music/Jazz/a.flac`` there. A path
under no prefix is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class PathMap:
    def __init__(self, table: Mapping[str, str] | None = None) -> None:
        self._pairs = sorted(((os.path.normpath(k), os.path.normpath(v))
                              for k, v in (table or {}).items()),
                             key=lambda pair: len(pair[0]), reverse=True)

    def local(self, catalogue_path: str) -> str:
        """Where this host reads the file the catalogue calls ``catalogue_path``."""
        return _swap(catalogue_path, self._pairs)

    def catalogue(self, local_path: str) -> str:
        """The catalogue's name for this host's ``local_path``."""
        return _swap(local_path, sorted(((v, k) for k, v in self._pairs),
                                        key=lambda pair: len(pair[0]), reverse=True))


def _swap(path: str, pairs: list[tuple[str, str]]) -> str:
    for prefix, replacement in pairs:
        if path == prefix:
            return replacement
        if path.startswith(prefix.rstrip("/") + "/"):
            return replacement.rstrip("/") + path[len(prefix.rstrip("/")):]
    return path
