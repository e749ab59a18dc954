"""Replacing a user's audio file with a tagged copy, safely.

``atomic_rewrite(path, mutate)`` is the only way genred changes a file. What it guarantees:

- **Links kept.** A symlink is followed: the file it points to is rewritten (the copy is made
  next to that file, so the rename stays on one file system) and the link is left as it is.
  A file with more than one hard link is refused (``TagRefused``): replacing it would give
  this name a new file while the other names keep the old one. ``split_hard_links=True``
  (config ``split_hard_links``) allows that split, knowingly.
- **Nobody else is writing it.** A file another process has open for writing (a copy or a
  download still in progress) is refused, checked when we start and again right before the
  rename: on Linux with a read lease (``fcntl(F_SETLEASE)`` fails while anyone holds a
  write descriptor), falling back to scanning ``/proc/*/fd`` where leases are not allowed.
  Size, mtime and inode are re-checked right before the rename as well.
- **The audio stays the same.** The copy is decoded after ``mutate`` changed it and its
  samples compared with the original's (both decoded with ``classifier.audio.decode_all``);
  any difference refuses the write (a truncated WAV/AIFF plays an appended ID3 chunk as
  audio). A file whose decoded audio ends well before its header's duration (still being
  written, or cut short) is refused as well.
- **Crash safety.** The copy (a short name, ``.genred-tmp-XXXXXXXX.EXT``, so a 240-byte file
  name still fits) is fsynced, given the original's mode (and owner, as root), renamed over
  the original, and the folder fsynced: a kill at any moment leaves the old or the new file,
  both complete. ``before_replace`` runs after every check and before the rename: the
  caller commits what it must not lose there.
- **Faults are errors, not crashes.** Every ``OSError`` (a full disk, a vanished file) becomes
  a ``TagError`` naming the file and the reason; the original is untouched, the copy removed.

Test hook: with ``GENRED_TEST_PAUSE_AFTER_RENAME=FILE`` in the environment, the process
creates FILE right after the rename and waits there (up to 10 minutes), so a test can kill
it at the worst moment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from classifier.audio import DecodedAudio

log = logging.getLogger(__name__)

TEMP_MARKER = ".genred-tmp"  # in the name of the temporary copies; watchers skip them
STALE_SECONDS = 600.0  # a temporary copy this old was left by a killed write
PAUSE_ENV = "GENRED_TEST_PAUSE_AFTER_RENAME"
_MAX_SUFFIX = 12  # longer "extensions" are dropped from the temp name (content decides)


class TagError(Exception):
    """A file's tags cannot be read or written (unsupported format, unreadable, read-only,
    vanished, changed under us, a disk fault); ``str(e) == f"{path}: {reason}"``, one line."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = os.fspath(path), " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")


class TagRefused(TagError):
    """genred could write the file but will not, because doing so could lose something
    (another program is writing it, it has several hard links, the audio would change, the
    audio is incomplete, the value is not printable text)."""


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for genred's own temporary copies (a watcher should ignore them)."""
    return TEMP_MARKER in os.path.basename(os.fspath(path))


def atomic_rewrite(path: str | os.PathLike[str], mutate: Callable[[str], None], *,
                   split_hard_links: bool = False,
                   before_replace: Callable[[], None] | None = None) -> None:
    """Copy the file ``path`` names (through a symlink) next to itself, let ``mutate``
    change the copy, check it (see the module docstring), call ``before_replace`` and rename
    the copy over the file. On any failure the file is untouched and the copy removed;
    TagRefused / TagError say why."""
    target, before = check_replaceable(path, split_hard_links=split_hard_links)
    audio = _decoded(path, target, "the file")
    _remove_stale_copies(target.parent)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TEMP_MARKER}-",
                                   suffix=_temp_suffix(target))
        with os.fdopen(fd, "wb") as dst, target.open("rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        mutate(tmp)
        if _decoded(path, Path(tmp), "the tagged copy").digest != audio.digest:
            raise TagRefused(path, "writing the tag would change the decoded audio (a "
                             "truncated or unusual file?); not written")
        _refuse_if_incomplete(path, audio.seconds, audio.header_seconds)
        _finish_copy(tmp, before)
        if before_replace is not None:
            before_replace()
        refuse_if_being_written(path, target)
        _check_unchanged(path, target, before)
        os.replace(tmp, target)
        tmp = ""
        _pause_for_tests()
    except OSError as e:
        raise TagError(path, f"{os_reason(e)}; not written") from e
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(target.parent)


def check_replaceable(path: str | os.PathLike[str], *,
                      split_hard_links: bool = False) -> tuple[Path, os.stat_result]:
    """The cheap checks ``atomic_rewrite`` starts with (what ``--pretend`` can report
    without decoding anything): the real file behind ``path`` and its stat, or TagRefused /
    TagError (read-only, vanished, hard links, another program writing it)."""
    target = Path(os.path.realpath(path))
    try:
        before = os.stat(target)
    except FileNotFoundError as e:
        raise TagError(path, "file vanished") from e
    except OSError as e:
        raise TagError(path, f"cannot stat: {os_reason(e)}") from e
    _writable(path, target, before)
    if before.st_nlink > 1 and not split_hard_links:
        raise TagRefused(path, f"has {before.st_nlink} hard links: replacing it would split "
                         "them (the other names would keep the old tags); not written "
                         "(split_hard_links = true allows it)")
    refuse_if_being_written(path, target)
    return target, before


def os_reason(e: BaseException) -> str:
    """The OS's words for the first OSError in ``e``'s chain ("no space left on device"),
    else the exception's text."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[0].lower() + seen.strerror[1:]
        seen = seen.__cause__ or seen.__context__
    return str(e) or type(e).__name__


def _writable(path: str | os.PathLike[str], target: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file")
    if not st.st_mode & stat.S_IWUSR or not os.access(target, os.W_OK):
        raise TagError(path, "file is read-only; tags not written")
    if not os.access(target.parent, os.W_OK):
        raise TagError(path, "folder is read-only; tags not written")


def _temp_suffix(target: Path) -> str:
    suffix = target.suffix
    return suffix if 0 < len(suffix.encode()) <= _MAX_SUFFIX else ""


# --- is another process writing it? --------------------------------------------------

def refuse_if_being_written(path: str | os.PathLike[str], target: Path) -> None:
    """TagRefused when some process has ``target`` open for writing."""
    if open_for_writing(target):
        raise TagRefused(path, "another program has the file open for writing (a copy or "
                         "download in progress?); not written")


def open_for_writing(target: Path) -> bool:
    """True when a process has ``target`` open for writing. A read lease is refused with
    EAGAIN exactly then; where leases are not allowed (a file we do not own without
    CAP_LEASE, some network file systems), ``/proc/*/fd`` is scanned instead."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False  # vanished or unreadable: the checks that follow report it
    try:
        take_read_lease(fd)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EBUSY):
            return True
        return writers_in_proc(target)
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def take_read_lease(fd: int) -> None:
    """Take a read lease on ``fd`` (release it with ``F_SETLEASE, F_UNLCK``); OSError EAGAIN
    when the file is open for writing. A writer opening the file while we hold the lease
    makes the kernel signal us, with SIGIO by default, which would kill the process (the
    daemon!): the lease is set to signal SIGURG instead, which is ignored by default."""
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)


def writers_in_proc(target: Path) -> bool:
    """True when ``/proc`` shows a descriptor open for writing on ``target``'s inode
    (processes whose descriptors we may not see are not counted)."""
    try:
        st = os.stat(target)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                other = os.stat(f"/proc/{pid}/fd/{fd}")
                if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(int(line.split()[1], 8) for line in info
                                 if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
    return False


# --- is the audio whole and unchanged? -----------------------------------------------

def _decoded(path: str | os.PathLike[str], file: Path, what: str) -> DecodedAudio:
    from classifier.audio import UnreadableAudio, decode_all

    try:
        return decode_all(file)
    except UnreadableAudio as e:
        raise TagRefused(path, f"cannot decode {what} to check its audio ({e.reason}); "
                         "not written") from e


def _refuse_if_incomplete(path: str | os.PathLike[str], seconds: float,
                          header_seconds: float) -> None:
    from classifier.audio_complete import early_end_tolerance  # the decoder's one rule

    if header_seconds > 0 and header_seconds - seconds > early_end_tolerance(header_seconds):
        raise TagRefused(path, f"its audio ends at {seconds:.1f} s but its header says "
                         f"{header_seconds:.1f} s (incomplete: still being copied, or cut "
                         "short?); not written")


# --- the copy ------------------------------------------------------------------------

def _remove_stale_copies(folder: Path) -> None:
    """Delete temporary copies a killed earlier write left in ``folder`` (older than
    ``STALE_SECONDS``, so a write in progress in another process is never disturbed)."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not (entry.name.startswith(".") and is_temp_file(entry.name)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and \
                        now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
                    log.info("removed %s, left by an interrupted tag write", entry.path)


def _finish_copy(tmp: str, original: os.stat_result) -> None:
    os.chmod(tmp, stat.S_IMODE(original.st_mode))
    if os.geteuid() == 0:
        os.chown(tmp, original.st_uid, original.st_gid)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())


def _check_unchanged(path: str | os.PathLike[str], target: Path,
                     before: os.stat_result) -> None:
    try:
        now = os.stat(target)
    except FileNotFoundError as e:
        raise TagError(path, "file vanished while writing tags") from e
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size,
                                                      before.st_mtime_ns):
        raise TagError(path, "file changed while writing tags; not written")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pause_for_tests() -> None:
    marker = os.environ.get(PAUSE_ENV)
    if not marker:
        return
    Path(marker).write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # the test kills us here
        time.sleep(0.05)
