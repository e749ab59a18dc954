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
the genre's name, never a numeric code ("(17)" is read as "Rock").

Several genres (main first) are written in each format's list form, the way players read
them: ID3v2.4 one TCON frame holding a null-separated list; ID3v2.3 (one text per frame)
one TCON frame joined with the config's ``genre_separator`` ("Rock; Blues"; never "/",
which mutagen would use and players split inside names); Vorbis comments one GENRE field
per genre; MP4 a list in ``©gen``; APEv2 a null-separated list value; ASF one WM/Genre
attribute per genre. One genre is written exactly as it always was. MP4's numeric ``gnre``
atom is read as its name by mutagen and saved as ``©gen``, so no file gets both.

Writes never touch the file in place: ``storage.filewrite.atomic_rewrite`` tags a copy next
to the file (the one a symlink points to), checks it decodes to the same samples, and renames
it over the original; a file another program is writing, a hard-linked file and a write that
would change the audio are refused (``TagRefused``). Read-only files, files that vanish and
disk faults raise ``TagError``. A genre that is not printable text is never written.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Callable
from typing import Any

import mutagen
from mutagen.apev2 import APEv2File
from mutagen.asf import ASF
from mutagen.id3 import ID3, TCON, TXXX, ID3FileType
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm

from storage.filewrite import (  # re-exported: the tag API callers use
    STALE_SECONDS,
    TEMP_MARKER,
    TagError,
    TagRefused,
    atomic_rewrite,
    check_replaceable,
    is_temp_file,
    os_reason,
)

__all__ = ["STALE_SECONDS", "TEMP_MARKER", "TagError", "TagRefused", "atomic_rewrite",
           "check_replaceable", "is_temp_file"]

log = logging.getLogger(__name__)

Values = dict[str, list[str]]
MODEL, CONFIDENCE = "model", "confidence"
USER_PROVENANCE = "user"  # the provenance value of a genre written from a correction


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


def _open(path: str | os.PathLike[str],
          shown: str | os.PathLike[str] | None = None) -> tuple[mutagen.FileType, str]:
    """Open with mutagen; errors name ``shown`` (the user's file when ``path`` is a copy)."""
    name = path if shown is None else shown
    try:
        audio = mutagen.File(path)
    except FileNotFoundError as e:
        raise TagError(name, "file vanished") from e
    except PermissionError as e:
        raise TagError(name, "permission denied") from e
    except Exception as e:  # mutagen raises many types on malformed files
        raise TagError(name, f"cannot read tags: {os_reason(e)}") from e
    if audio is None:
        raise TagError(name, "not a tagged audio format genred knows")
    kind = kind_of(audio)
    if not kind:
        raise TagError(name, f"tags not supported for {type(audio).__name__} files")
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

_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls (NUL, newline, ESC), line breaks


def printable(text: str) -> bool:
    """False for text holding control characters (NUL, newlines, ESC sequences), line or
    paragraph separators or lone surrogates: such a value never goes into a tag."""
    return not any(unicodedata.category(c) in _UNPRINTABLE for c in text)


def genre_values(kind: str, genre: str | list[str], model: str | None,
                 confidence: float | None) -> dict[str, list[str] | None]:
    """The changes that make a file of ``kind`` say ``genre`` (or several genres, main
    first) with genred's provenance (None = remove the key). A user correction has no
    model: provenance says "user". Raises ValueError for a genre or model that is not
    printable text."""
    genres = [genre] if isinstance(genre, str) else list(genre)
    if not genres or not printable(model or "") or \
            any(not g.strip() or not printable(g) for g in genres):
        raise ValueError(f"not printable text: {genres!r} / {model!r}")
    keys = _KEYS[kind]
    changes: dict[str, list[str] | None] = {
        keys["genre"]: genres,
        keys[MODEL]: [model or USER_PROVENANCE],
        keys[CONFIDENCE]: [f"{confidence:.3f}"] if confidence is not None else None,
    }
    if "genre_id" in keys:
        changes[keys["genre_id"]] = None
    return changes


Replacing = Callable[[Values, Values], None]  # (values before, values after) -> None


def update(path: str | os.PathLike[str], changes: dict[str, list[str] | None], *,
           split_hard_links: bool = False, before_replace: Replacing | None = None,
           separator: str | None = None) -> Values:
    """Apply ``changes`` (key -> values, None = delete) to the file's tags, atomically (see
    ``storage.filewrite``). ``before_replace(before, after)`` is called with the values of
    the very bytes being replaced and of the copy replacing them, after every check and
    before the rename. With ``separator``, several genres going into an ID3v2.3 tag (one
    text per frame there) are joined with it into one TCON value ("Rock; Blues"); without,
    the values are written as given (a restore). Returns the genre-related values the
    file holds afterwards."""
    result: dict[str, Values] = {}

    def mutate(tmp: str) -> None:
        audio, kind = _open(tmp, shown=path)
        result["before"] = _values(audio, kind)
        for key, values in changes.items():
            if separator is not None and values and len(values) > 1 and key == "TCON" \
                    and _id3_version(audio) == 3:
                values = [separator.join(values)]
            _set(audio, kind, key, values)
        try:
            _save(audio, kind)
        except Exception as e:  # mutagen wraps the OS's errors (a full disk) in its own
            raise TagError(path, f"cannot save tags: {os_reason(e)}") from e
        result["after"] = _values(*_open(tmp, shown=path))

    def replacing() -> None:
        if before_replace is not None:
            before_replace(result["before"], result["after"])

    atomic_rewrite(path, mutate, split_hard_links=split_hard_links, before_replace=replacing)
    return result["after"]


def _id3_version(audio: mutagen.FileType) -> int:
    """The ID3v2 minor version the file keeps (3 or 4; 4 for a file without a tag)."""
    tags: Any = audio.tags
    return int(tags.version[1]) if isinstance(tags, ID3) else 4


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
