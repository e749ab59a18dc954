"""Title, artist and album of a file, read from its tags (mutagen's "easy" interface).

The catalogue does not store them yet, so the review page reads them for the rows it shows
(a page at a time). Reads are cached by (path, size, mtime): a retagged file is read again.
A file without tags, or one mutagen cannot read, gives empty values; never an error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class TitleTags:
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    albumartist: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return asdict(self)


_cache: OrderedDict[tuple[str, int, float], TitleTags] = OrderedDict()
_lock = threading.Lock()


def _first(tags: object, key: str) -> str | None:
    try:
        values = tags[key]  # type: ignore[index]
    except (KeyError, ValueError, TypeError):
        return None
    for value in values if isinstance(values, list) else [values]:
        text = " ".join(str(value).split())
        if text:
            return text[:300]
    return None


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
                     _first(tags, "albumartist"))


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
