"""Reading a file for FFmpeg with a bound on how much is read while no audio is found.

A file of zeros named ``.mp3`` made FFmpeg read all of it while probing (4 GB: 49 s, 2.3 GB
per decode process). classifier.audio opens every file through :class:`BoundedFile`, whose
reads stop (end-of-file, as on a short file) once :func:`search_budget` bytes have gone by
without an audio packet; an ID3v2 tag at the start, whose size its header gives, does not
count against the budget (cover art may make it large).
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

# At most this many bytes are read in a row without finding an audio packet (beyond an
# ID3v2 tag at the start, whose size its header gives): a 4 GB file of zeros named .mp3
# made FFmpeg read all of it while probing (49 s, 2.3 GB per decode process).
SEARCH_BUDGET_BYTES = 32 << 20


class BoundedFile(io.RawIOBase):
    """The file, for FFmpeg, with a bound on how much of it may be read while no audio is
    found: once ``budget`` bytes have been read since the start (or since the last
    :meth:`found_audio`), reads return end-of-file and FFmpeg gives up as on a short file."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__()
        self._file = path.open("rb")
        self.name = str(path)
        self.budget = budget
        self.searched = 0

    @property
    def exhausted(self) -> bool:
        return self.searched >= self.budget

    def found_audio(self) -> None:
        """Audio was found: the next ``budget`` bytes may be read again."""
        self.searched = 0

    def lift(self) -> None:
        """No bound from now on: the caller reads the whole file, audio having been found."""
        self.budget = 1 << 62

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.exhausted:
            return 0
        n = self._file.readinto(buffer)
        self.searched += n or 0
        return n or 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """The new position; a seek the file refuses (before its start) is FFmpeg's error
        code (-errno), as its own file protocol answers: an exception raised here would be
        printed by PyAV ("library exception being dropped") and then dropped all the same."""
        try:
            return self._file.seek(offset, whence)
        except OSError as e:
            return -(e.errno or errno.EIO)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def id3v2_size(path: Path) -> int:
    """Bytes of the ID3v2 tag at the start of ``path`` (0 when none): cover art may make it
    large, and FFmpeg reads it whole before the audio."""
    with path.open("rb") as fh:
        head = fh.read(10)
    if len(head) < 10 or not head.startswith(b"ID3") or any(b & 0x80 for b in head[6:10]):
        return 0
    size = 0
    for b in head[6:10]:  # "syncsafe": 7 bits a byte
        size = (size << 7) | b
    return size + 10


def search_budget(path: Path) -> int:
    """Bytes that may be read from ``path`` before any audio is found."""
    return SEARCH_BUDGET_BYTES + id3v2_size(path)
