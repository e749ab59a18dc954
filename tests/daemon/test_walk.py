"""The folder walk on real folders: what it yields, what it counts, what it never opens;
and how names are shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.walk import Walk
from storage.names import shown
from tests.audiogen import make_track


def test_non_regular_files_are_counted_and_links_to_folders_not_followed(
        tmp_path: Path) -> None:
    make_track(tmp_path / "lib" / "a.ogg", "Drone", 1.0)
    make_track(tmp_path / "elsewhere" / "b.ogg", "Drone", 1.0)
    lib = tmp_path / "lib"
    os.mkfifo(lib / "pipe.ogg")
    try:
        os.mknod(lib / "null.ogg", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        os.symlink("/dev/null", lib / "null.ogg")
    os.symlink("loop.ogg", lib / "loop.ogg")
    os.symlink("gone.ogg", lib / "dangling.ogg")
    os.symlink(tmp_path / "elsewhere", lib / "linked-folder")
    os.symlink(tmp_path / "elsewhere" / "b.ogg", lib / "linked.ogg")
    walk = Walk([lib])
    assert [p.name for p in walk] == ["a.ogg", "linked.ogg"]
    assert sorted(Path(p).name for p in walk.not_regular) == [
        "dangling.ogg", "loop.ogg", "null.ogg", "pipe.ogg"]
    assert walk.summary() == "4 skipped: not regular files"
    assert not walk.unreadable


def test_a_root_that_is_a_fifo_is_counted_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.ogg")
    walk = Walk([tmp_path / "pipe.ogg"])
    assert list(walk) == [] and walk.summary() == "1 skipped: not regular files"


def test_plain_names_are_shown_as_they_are_and_hostile_ones_escaped() -> None:
    for plain in ["/m/Björk/01 – Hunter.ogg", "/m/日本/曲.mp3", "/m/a%b_[c]*d.flac", "/m/ a b "]:
        assert shown(plain) == plain
    assert shown("/m/a\\b") == "/m/a\\\\b"
    assert shown("/m/x\n\t\r\x1b]0;t\x07\x7f\x9b.ogg") == \
        "/m/x\\n\\t\\r\\x1b]0;t\\x07\\x7f\\x9b.ogg"
    assert shown(os.fsdecode(b"/m/bad\xffname.ogg")) == "/m/bad\\xffname.ogg"
    assert shown("/m/\u202eevil\u200b\u2028.ogg") == "/m/\\u202eevil\\u200b\\u2028.ogg"
    assert shown("/m/\U000e0001tag") == "/m/\\U000e0001tag"
