"""Title, artist, album, album artist, track number and year of a file, read from its tags
(mutagen's "easy" interface, which maps ID3, Vorbis, MP4, APE and ASF keys alike).

``read_titles`` runs when a file is classified (in the decode process) and the catalogue
stores the result with the prediction (``tracks.title`` ...). ``title_tags`` is the cached
read for tracks the catalogue has none for yet (classified before these columns existed):
cached by (path, size, mtime), so a retagged file is read again. A file without tags, or one
mutagen cannot read, gives empty values; never an error.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

from storage.names import safe_text

log = logging.getLogger(__name__)

CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class TitleTags:
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    albumartist: str | None = None
    tracknumber: int | None = None
    year: int | None = None

    def as_json(self) -> dict[str, str | int | None]:
        return asdict(self)

    def columns(self) -> dict[str, str | int | None]:
        """The values under the catalogue's column names (``tracks.album_artist`` ...)."""
        return {"title": self.title, "artist": self.artist, "album": self.album,
                "album_artist": self.albumartist, "track_number": self.tracknumber,
                "year": self.year}


MAX_TEXT = 300  # characters kept of a title, artist or album
_NUMBER = re.compile(r"\s*(\d{1,9})")


_cache: OrderedDict[tuple[str, int, float], TitleTags] = OrderedDict()
_lock = threading.Lock()


def _first(tags: object, key: str) -> str | None:
    try:
        values = tags[key]  # type: ignore[index]
    except (KeyError, ValueError, TypeError):
        return None
    for value in values if isinstance(values, list) else [values]:
        text = " ".join(str(value).split())
        if text and text.isprintable():
            return safe_text(text[:MAX_TEXT])
    return None


def _number(tags: object, key: str, low: int, high: int) -> int | None:
    """The leading number of a tag ("3/12" -> 3, "2004-05-01" -> 2004) when it lies in
    [low, high]; None otherwise."""
    text = _first(tags, key)
    match = _NUMBER.match(text or "")
    if match is None:
        return None
    value = int(match.group(1))
    return value if low <= value <= high else None


def read_titles(path: str | os.PathLike[str]) -> TitleTags:
    """The file's title tags, read now (no cache): what a scan stores."""
    return _read(os.fspath(path))


def _read(path: str) -> TitleTags:
    import mutagen

    try:
        audio = mutagen.File(path, easy=True)
    except Exception as e:  # mutagen raises many types for damaged files
        log.debug("no title tags read from %s: %s", path, e)
        return TitleTags()
    if audio is None or audio.tags is None:
        return TitleTags()
    tags = audio.tags
    return TitleTags(_first(tags, "title"), _first(tags, "artist"), _first(tags, "album"),
                     _first(tags, "albumartist"), _number(tags, "tracknumber", 0, 9999),
                     _number(tags, "date", 1, 9999) or _number(tags, "year", 1, 9999))


def title_tags(path: str | os.PathLike[str]) -> TitleTags:
    """The file's title/artist/album (None where the tag is absent or unreadable)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return TitleTags()
    key = (path, st.st_size, st.st_mtime)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    tags = _read(path)
    with _lock:
        _cache[key] = tags
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return tags
