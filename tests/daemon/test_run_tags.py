"""The daemon with tag writing on, against a copy that stalls longer than settle_seconds:
the file is quiet, but another program still has it open for writing. It is neither
classified nor tagged until the copy is closed, then both, once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from classifier.audio import decode_all
from storage import tags
from tests.audiogen import make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for

STALLED_COPY = """
import sys
src, dst = open(sys.argv[1], "rb").read(), open(sys.argv[2], "wb")
dst.write(src[: len(src) * 2 // 5])
dst.flush()
print("stalled", flush=True)
sys.stdin.readline()  # the network comes back
dst.write(src[len(src) * 2 // 5:])
dst.close()
print("done", flush=True)
"""


def test_a_stalled_copy_is_never_replaced_and_is_tagged_once_complete(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    library.env["GENRED_TAG_THRESHOLD"] = "0"  # the tiny model is never confident
    source = make_track(tmp_path / "source.mp3", "Pulse", 12.0, seed=3)
    daemon = Daemon(library, "--write-tags", settle=1.0)
    daemons.append(daemon)
    daemon.ready()
    dest = library.music / "song.mp3"
    copy = subprocess.Popen([sys.executable, "-c", STALLED_COPY, str(source), str(dest)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert copy.stdin is not None and copy.stdout is not None
    try:
        assert copy.stdout.readline().strip() == "stalled"
        wait_for(lambda: "another program has it open for writing" in daemon.output(), 90,
                 "the daemon to hold back the quiet, half-copied file")
        # Neither classified from 40 % of its audio nor tagged: it is not settled.
        assert library.status_of(dest) in (None, "pending")
        assert library.predictions(dest) == []
        assert library.rows("SELECT count(*) FROM tag_backups")[0][0] == 0
        copy.stdin.write("go\n")
        copy.stdin.flush()
        assert copy.stdout.readline().strip() == "done"
    finally:
        copy.kill()
        copy.wait(timeout=30)

    wait_for(lambda: library.rows("SELECT count(*) FROM tag_backups WHERE written != '{}'")[
        0][0], 90, "the genre tag to be written once the copy completed")
    assert decode_all(dest).digest == decode_all(source).digest  # every sample arrived
    assert len(tags.read_genres(dest)) == 1
    assert len(library.predictions(dest)) == 1  # classified once, from the whole file
    assert daemon.terminate()[0] == 0
