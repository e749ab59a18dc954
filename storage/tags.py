"""Genre tags in audio files: read them, write them safely, put the originals back.

Every format speaks its own dialect; this module maps each to a small dict of
"genre-related values" (key -> list of strings) so the catalogue can back them up and
compare them without knowing the format:

========  ==========================================  =======================================
kind      formats (mutagen)                            keys
========  ==========================================  =======================================
id3       MP3, AIFF, WAV, DSF, TrueAudio              TCON, TXXX:GENRED_MODEL, ..._CONFIDENCE
vorbis    FLAC, Ogg Vorbis/Opus/FLAC/Speex            genre, genred_model, genred_confidence
mp4       M4A/MP4 (AAC, ALAC)                         ©gen, ----:com.genred:model, ...
ape       APE, WavPack, Musepack, OptimFROG           Genre, GENRED_MODEL, GENRED_CONFIDENCE
asf       WMA                                         WM/Genre, WM/GenreID, GENRED/Model, ...
========  ==========================================  =======================================

ID3 keeps the file's version (a v2.3 tag stays v2.3) and gets exactly one TCON frame with
the genre's name, never a numeric code ("(17)" is read as "Rock"). MP4's numeric ``gnre``
atom is read as its name by mutagen and saved as ``©gen``, so no file gets both.

Writes never touch the file in place: a copy next to it (``.NAME.genred-tmp-*.EXT``) is
tagged, fsynced and renamed over the original, keeping its permissions (and owner, when run
as root), then the folder is fsynced. A kill at any moment leaves the old or the new file,
both complete. Read-only files and files that vanish raise ``TagError``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mutagen
from mutagen.apev2 import APEv2File
from mutagen.asf import ASF
from mutagen.id3 import ID3, TCON, TXXX, ID3FileType
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm

log = logging.getLogger(__name__)

TEMP_MARKER = ".genred-tmp"  # in the name of the temporary copies; watchers skip them
STALE_SECONDS = 600.0  # a temporary copy this old was left by a killed write
Values = dict[str, list[str]]
MODEL, CONFIDENCE = "model", "confidence"
USER_PROVENANCE = "user"  # the provenance value of a genre written from a correction


class TagError(Exception):
    """A file's tags cannot be read or written (unsupported format, unreadable, read-only,
    vanished, changed under us); ``str(e) == f"{path}: {reason}"``, one line."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = os.fspath(path), " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for genred's own temporary copies (a watcher should ignore them)."""
    return TEMP_MARKER in os.path.basename(os.fspath(path))


# --- per-format keys -------------------------------------------------------------------

_KEYS: dict[str, dict[str, str]] = {  # kind -> role -> key
    "id3": {"genre": "TCON", MODEL: "TXXX:GENRED_MODEL", CONFIDENCE: "TXXX:GENRED_CONFIDENCE"},
    "vorbis": {"genre": "genre", MODEL: "genred_model", CONFIDENCE: "genred_confidence"},
    "mp4": {"genre": "©gen", MODEL: "----:com.genred:model",
            CONFIDENCE: "----:com.genred:confidence"},
    "ape": {"genre": "Genre", MODEL: "GENRED_MODEL", CONFIDENCE: "GENRED_CONFIDENCE"},
    "asf": {"genre": "WM/Genre", "genre_id": "WM/GenreID", MODEL: "GENRED/Model",
            CONFIDENCE: "GENRED/Confidence"},
}


def kind_of(audio: mutagen.FileType) -> str:
    """Which tag dialect ``audio`` uses; TagError-free: "" when unsupported."""
    if isinstance(audio, ID3FileType) or isinstance(audio.tags, ID3):
        return "id3"
    if isinstance(audio, MP4):
        return "mp4"
    if isinstance(audio, APEv2File):
        return "ape"
    if isinstance(audio, ASF):
        return "asf"
    module = type(audio).__module__
    if module.startswith(("mutagen.flac", "mutagen.ogg")):
        return "vorbis"
    if hasattr(audio, "add_tags") and module.startswith(("mutagen.aiff", "mutagen.wave",
                                                         "mutagen.dsf")):
        return "id3"
    return ""


def _open(path: str | os.PathLike[str]) -> tuple[mutagen.FileType, str]:
    try:
        audio = mutagen.File(path)
    except FileNotFoundError as e:
        raise TagError(path, "file vanished") from e
    except PermissionError as e:
        raise TagError(path, "permission denied") from e
    except Exception as e:  # mutagen raises many types on malformed files
        raise TagError(path, f"cannot read tags: {e}") from e
    if audio is None:
        raise TagError(path, "not a tagged audio format genred knows")
    kind = kind_of(audio)
    if not kind:
        raise TagError(path, f"tags not supported for {type(audio).__name__} files")
    return audio, kind


def _get(audio: mutagen.FileType, kind: str, key: str) -> list[str] | None:
    tags: Any = audio.tags
    if tags is None:
        return None
    if kind == "id3":
        frames = tags.getall(key)
        return [str(t) for f in frames for t in f.text] if frames else None
    if kind == "vorbis":
        return list(tags[key]) if key in tags else None
    if kind == "mp4":
        if key not in tags:
            return None
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in tags[key]]
    if kind == "ape":
        return [str(v) for v in tags[key]] if key in tags else None
    return [str(v.value) for v in tags[key]] if key in tags else None  # asf


def _set(audio: mutagen.FileType, kind: str, key: str, values: list[str] | None) -> None:
    if audio.tags is None:
        audio.add_tags()
    tags: Any = audio.tags
    if kind == "id3":
        tags.delall(key)
        if values is not None:
            tags.add(_id3_frame(key, values))
        return
    if values is None:
        if key in tags:
            del tags[key]
        return
    if kind == "mp4":
        tags[key] = _mp4_values(key, values)
    elif kind == "ape":
        tags[key] = "\0".join(values)
    else:  # vorbis, asf
        tags[key] = list(values)


def _id3_frame(key: str, values: list[str]) -> Any:
    if key == "TCON":
        return TCON(encoding=3, text=values)
    return TXXX(encoding=3, desc=key.split(":", 1)[1], text=values)


def _mp4_values(key: str, values: list[str]) -> list[Any]:
    if key.startswith("----:"):
        return [MP4FreeForm(v.encode("utf-8"), dataformat=AtomDataType.UTF8) for v in values]
    return list(values)


def _values(audio: mutagen.FileType, kind: str) -> Values:
    out: Values = {}
    for key in _KEYS[kind].values():
        got = _get(audio, kind, key)
        if got is not None:
            out[key] = got
    return out


# --- reading ---------------------------------------------------------------------------

def read_values(path: str | os.PathLike[str]) -> tuple[str, Values]:
    """(kind, the file's genre-related values): what a backup keeps and restore compares."""
    audio, kind = _open(path)
    return kind, _values(audio, kind)


def read_genres(path: str | os.PathLike[str]) -> list[str]:
    """The file's genre tag values as names (ID3 numeric codes such as "(17)" are read as
    their names), empty when it has none."""
    audio, kind = _open(path)
    tags: Any = audio.tags
    if kind == "id3" and tags is not None and tags.getall("TCON"):
        return [g for f in tags.getall("TCON") for g in f.genres if g.strip()]
    return [g for g in (_get(audio, kind, _KEYS[kind]["genre"]) or []) if g.strip()]


def provenance(kind: str, values: Values) -> str | None:
    """The model version genred recorded with the genre (``USER_PROVENANCE`` for a user
    correction), or None when genred did not write this genre."""
    got = values.get(_KEYS[kind][MODEL])
    return got[0] if got else None


def genre_key(kind: str) -> str:
    """The key of the genre itself (TCON, genre, ©gen, Genre, WM/Genre)."""
    return _KEYS[kind]["genre"]


def genre_of(kind: str, values: Values) -> list[str]:
    """The genre values in a ``read_values`` result."""
    return [g for g in values.get(_KEYS[kind]["genre"], []) if g.strip()]


# --- writing ---------------------------------------------------------------------------

def genre_values(kind: str, genre: str, model: str | None,
                 confidence: float | None) -> dict[str, list[str] | None]:
    """The changes that make a file of ``kind`` say ``genre`` with genred's provenance
    (None = remove the key). A user correction has no model: provenance says "user"."""
    keys = _KEYS[kind]
    changes: dict[str, list[str] | None] = {
        keys["genre"]: [genre],
        keys[MODEL]: [model or USER_PROVENANCE],
        keys[CONFIDENCE]: [f"{confidence:.3f}"] if confidence is not None else None,
    }
    if "genre_id" in keys:
        changes[keys["genre_id"]] = None
    return changes


def update(path: str | os.PathLike[str], changes: dict[str, list[str] | None]) -> Values:
    """Apply ``changes`` (key -> values, None = delete) to the file's tags, atomically.
    Returns the genre-related values the file holds afterwards."""
    result: dict[str, Values] = {}

    def mutate(tmp: str) -> None:
        audio, kind = _open(tmp)
        for key, values in changes.items():
            _set(audio, kind, key, values)
        _save(audio, kind)
        result["after"] = _values(*_open(tmp))

    atomic_rewrite(path, mutate)
    return result["after"]


def _save(audio: mutagen.FileType, kind: str) -> None:
    tags: Any = audio.tags
    if kind == "id3":
        version = tags.version[1] if tags is not None else 4
        if version == 3:
            tags.update_to_v23()
            audio.save(v2_version=3)
        else:
            audio.save(v2_version=4)
    else:
        audio.save()


def _writable(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file")
    if not st.st_mode & stat.S_IWUSR or not os.access(path, os.W_OK):
        raise TagError(path, "file is read-only; tags not written")
    if not os.access(path.parent, os.W_OK):
        raise TagError(path, "folder is read-only; tags not written")


def atomic_rewrite(path: str | os.PathLike[str], mutate: Callable[[str], None]) -> None:
    """Copy ``path`` next to itself, let ``mutate`` change the copy, fsync it and rename it
    over ``path``. On any failure the original is untouched and the copy removed. If the
    file changes while this runs, nothing is replaced (TagError)."""
    target = Path(path)
    try:
        before = os.stat(target)
    except FileNotFoundError as e:
        raise TagError(target, "file vanished") from e
    _writable(target, before)
    _remove_stale_copies(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.",
                               suffix=f"{TEMP_MARKER}{target.suffix}")
    try:
        with os.fdopen(fd, "wb") as dst, target.open("rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        mutate(tmp)
        _finish_copy(tmp, before)
        _check_unchanged(target, before)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _remove_stale_copies(target: Path) -> None:
    """Delete temporary copies of ``target`` a killed earlier write left behind (older than
    ``STALE_SECONDS``, so a write in progress in another process is never disturbed)."""
    now = time.time()
    for copy in target.parent.glob(f".{glob.escape(target.stem)}.*{TEMP_MARKER}*"):
        with contextlib.suppress(OSError):
            if now - copy.stat().st_mtime > STALE_SECONDS:
                copy.unlink()
                log.info("removed %s, left by an interrupted tag write", copy)


def _finish_copy(tmp: str, original: os.stat_result) -> None:
    os.chmod(tmp, stat.S_IMODE(original.st_mode))
    if os.geteuid() == 0:
        os.chown(tmp, original.st_uid, original.st_gid)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())


def _check_unchanged(target: Path, before: os.stat_result) -> None:
    try:
        now = os.stat(target)
    except FileNotFoundError as e:
        raise TagError(target, "file vanished while writing tags") from e
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size,
                                                      before.st_mtime_ns):
        raise TagError(target, "file changed while writing tags; not written")


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
