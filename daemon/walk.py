"""The folder walk ``scan``, ``classify``, ``import-tags``, ``correct DIR`` and the daemon's
rescans share: which files under a folder are audio, and what could not be looked at.

``Walk(roots)`` yields the audio files (sorted per folder, a folder's files before its
sub-folders; junk names skipped; symlinked folders not followed, symlinked files taken),
and records on the way, without stopping:

- ``unreadable``: folders genred may not list (no read permission) or not look into (read
  but no execute permission: names without stat), with the reason. Their files are left
  out, and *nothing* is concluded about their tracks: unreadable is not missing
  (``storage.paths.is_gone`` is how the catalogue decides "missing");
- ``not_regular``: FIFOs, device files, sockets, symlink loops and dangling links. Only
  ``stat`` is ever called on them: opening a FIFO would block the scan forever.

Nothing here raises for what a folder holds; a file name that is not valid UTF-8 comes out
as ``os.fsdecode`` makes it (see storage/paths.py), like any other.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from classifier.audio import UnreadableAudio, probe
from daemon.watcher import is_junk
from storage.names import shown

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    """
    .mp3 .mp2 .flac .ogg .oga .opus .spx .m4a .m4b .mp4 .aac .alac .wav .wave .aif .aiff
    .aifc .wv .ape .mpc .mp+ .wma .asf .dsf .dff .tta .ofr .ofs .caf .mka .webm .ac3
    .amr .au .snd .w64
    """.split()  # noqa: SIM905
)
# Never audio: not worth opening to sniff.
NOT_AUDIO_EXTENSIONS = frozenset(
    """
    .jpg .jpeg .png .gif .bmp .webp .tif .tiff .svg .txt .md .nfo .cue .m3u .m3u8 .pls
    .log .pdf .db .ini .json .xml .html .htm .sfv .md5 .sha1 .lrc .url .zip .rar .7z .gz
    .tar .py .sh .csv .toml .yaml .yml .doc .docx .exe .dll .iso
    """.split()  # noqa: SIM905
)


def looks_like_audio(path: Path) -> bool:
    """Audio by extension; a file with no or an unknown extension is sniffed (mutagen
    reads its header, else FFmpeg probes it for an audio stream), so ``track01`` or
    ``song.dat`` holding MP3 data is found. Call it on regular files only."""
    ext = path.suffix.lower()
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in NOT_AUDIO_EXTENSIONS:
        return False
    import mutagen

    try:
        if mutagen.File(path) is not None:
            return True
    except Exception:  # mutagen raises many types on non-audio; it is simply not audio
        return False
    try:  # formats mutagen does not tag but FFmpeg decodes (raw AAC, AMR, ...)
        probe(path)
    except UnreadableAudio:
        return False
    return True


class Walk:
    """Iterate the audio files under ``roots`` (a root that is a file is taken as given
    when it is a regular file); ``unreadable`` and ``not_regular`` fill as it goes."""

    def __init__(self, roots: Iterable[str | Path],
                 is_audio: Callable[[Path], bool] = looks_like_audio) -> None:
        self.roots = [Path(r) for r in roots]
        self.is_audio = is_audio
        self.unreadable: dict[str, str] = {}  # folder -> reason
        self.not_regular: list[str] = []

    def summary(self) -> str:
        """``"2 folders unreadable, 3 skipped: not regular files"``, or ``""``."""
        parts = []
        if self.unreadable:
            n = len(self.unreadable)
            parts.append(f"{n} folder{'' if n == 1 else 's'} unreadable")
        if self.not_regular:
            parts.append(f"{len(self.not_regular)} skipped: not regular files")
        return ", ".join(parts)

    def __iter__(self) -> Iterator[Path]:
        for root in self.roots:
            kind = self._kind(root, root.parent)
            if kind == "file":
                yield root
            elif kind == "dir":
                yield from self._folder(root, root)

    def _kind(self, path: Path, folder: Path) -> str:
        """``file`` (regular), ``dir``, ``other`` (counted) or ``skip``."""
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno == errno.EACCES and os.path.islink(path):
                self._unreadable(path, e)  # a link into a place genred may not look
            elif e.errno == errno.EACCES:
                self._unreadable(folder, e)  # read but no execute permission on folder
            elif os.path.islink(path):  # a loop (ELOOP) or a dangling link
                self._not_regular(path, "symlink loop" if e.errno == errno.ELOOP
                                  else "dangling symlink")
            return "skip"  # vanished since it was listed: nothing to say
        if stat.S_ISDIR(st.st_mode):
            return "dir"
        if stat.S_ISREG(st.st_mode):
            return "file"
        self._not_regular(path, "FIFO" if stat.S_ISFIFO(st.st_mode) else
                          "device file" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                          else "socket")
        return "other"

    def _unreadable(self, folder: Path, e: OSError) -> None:
        key = str(folder)
        if key not in self.unreadable:
            self.unreadable[key] = e.strerror or str(e)
            log.warning("cannot read folder %s: %s (its tracks are left as they are)",
                        shown(key), self.unreadable[key])

    def _not_regular(self, path: Path, what: str) -> None:
        self.not_regular.append(str(path))
        log.info("skipped %s: %s, not a regular file", shown(str(path)), what)

    def _folder(self, folder: Path, root: Path) -> Iterator[Path]:
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e.name, e.is_symlink()) for e in listing)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):  # gone meanwhile: nothing to say
                self._unreadable(folder, e)
            return
        subfolders: list[Path] = []
        for name, is_link in entries:
            path = folder / name
            if is_junk(path, root):
                continue
            kind = self._kind(path, folder)
            if kind == "skip" and str(folder) in self.unreadable:
                return  # read but no execute permission: no name in it can be looked at
            if kind == "dir" and not is_link:
                subfolders.append(path)
            elif kind == "file" and self.is_audio(path):
                yield path
        for sub in subfolders:
            yield from self._folder(sub, root)


def gather(roots: Iterable[str | Path]) -> Iterator[Path]:
    """The audio files of ``Walk(roots)``, for callers with no use for its report."""
    return iter(Walk(roots))
