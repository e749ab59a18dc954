"""A FUSE file system that mirrors a folder and fails with real I/O errors on demand: the
disk genred's catalogue sits on "breaks" while genred runs, and "heals" again.

    python tests/faultfs.py ROOT MOUNTPOINT SWITCH

Mirrors ROOT at MOUNTPOINT (in the foreground, until unmounted). While the file SWITCH
exists, every read, write, fsync, create and truncate of a file answers EIO — what a failing
disk, a dropped network share or a bad sector gives a program — and metadata (stat, list)
still works, as on a disk whose data blocks are failing. Exit status 3 with one line when
FUSE is not usable here (no /dev/fuse, no libfuse2, not allowed to mount).

Needs ``fusepy`` (a test dependency) and the libfuse2 library (Debian: ``libfuse2``).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

NOT_USABLE = 3


def main() -> int:
    root, mountpoint, switch = (os.path.abspath(a) for a in sys.argv[1:4])
    try:
        from fuse import FUSE, FuseOSError, Operations
    except (ImportError, OSError) as e:  # fusepy raises OSError without libfuse
        print(f"faultfs: FUSE not usable: {e}", file=sys.stderr)
        return NOT_USABLE

    class FaultFS(Operations):  # type: ignore[misc]
        def _path(self, path: str) -> str:
            return os.path.join(root, path.lstrip("/"))

        def _fault(self) -> None:
            if os.path.exists(switch):
                raise FuseOSError(errno.EIO)

        def access(self, path: str, mode: int) -> None:
            if not os.access(self._path(path), mode):
                raise FuseOSError(errno.EACCES)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self._path(path), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(self._path(path), uid, gid)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            try:
                st = os.lstat(self._path(path))
            except OSError as e:
                raise FuseOSError(e.errno) from e
            return {key: getattr(st, key) for key in (
                "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid")}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._path(path))]

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(self._path(path), mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(self._path(path))

        def unlink(self, path: str) -> None:
            os.unlink(self._path(path))

        def rename(self, old: str, new: str) -> None:
            os.rename(self._path(old), self._path(new))

        def utimens(self, path: str, times: tuple[float, float] | None = None) -> None:
            os.utime(self._path(path), times)

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self._path(path))
            return {key: getattr(st, key) for key in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")}

        def open(self, path: str, flags: int) -> int:
            return os.open(self._path(path), flags)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            self._fault()
            return os.open(self._path(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            self._fault()
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            self._fault()
            return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            self._fault()
            with open(self._path(path), "r+b") as f:
                f.truncate(length)

        def flush(self, path: str, fh: int) -> None:
            os.fsync(fh)

        def fsync(self, path: str, datasync: bool, fh: int) -> None:
            self._fault()
            os.fsync(fh)

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

    try:
        FUSE(FaultFS(), mountpoint, foreground=True, nothreads=True, allow_other=True)
    except RuntimeError as e:  # fusepy: the mount itself failed
        print(f"faultfs: FUSE not usable: cannot mount {mountpoint}: {e}", file=sys.stderr)
        return NOT_USABLE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
