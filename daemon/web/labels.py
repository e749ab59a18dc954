"""Corrections from the page: the genre the user meant, then the same storage calls as
``genred correct`` (``storage.genres.normalise`` + ``storage.corrections.add_label``, and
the tag policy when ``write_tags`` is on).

The vocabulary rule of issue 10, as the page applies it: a genre that is neither known
(the active model's labels, genres the catalogue's predictions and labels use) nor an
alias is refused with the closest known names, unless the request says ``new_genre``; a
known genre is stored in its known spelling whatever the case typed; a new one keeps the
user's spelling.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlalchemy import Engine

from daemon.config import Config


class GenreRefused(Exception):
    """The genre is not in the vocabulary (and no explicit new genre was asked for)."""

    def __init__(self, genre: str, suggestions: list[str]) -> None:
        self.genre, self.suggestions = genre, suggestions
        hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown genre '{genre}'{hint} (send new_genre: true to add it)")


class BadGenre(ValueError):
    """Empty, too long or not text."""


@dataclass(frozen=True)
class Vocabulary:
    model: list[str]  # the active model's labels
    used: dict[str, dict[str, int]]  # genre -> {"predicted": n, "labels": n}

    def names(self) -> list[str]:
        seen: dict[str, str] = {}
        for name in [*self.model, *self.used]:
            seen.setdefault(name.lower(), name)
        return sorted(seen.values(), key=str.lower)


def vocabulary(engine: Engine, cfg: Config) -> Vocabulary:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound, ModelStore
    from storage.review import genre_vocabulary

    store = ModelStore(cfg.model_store_path)
    try:
        labels = read_meta(store.resolve(cfg.model) if cfg.model else store.active()).labels
    except (BundleError, ModelNotFound):
        labels = []
    return Vocabulary(list(labels), genre_vocabulary(engine))


def resolve_genre(engine: Engine, cfg: Config, text: object, new_genre: bool) -> str:
    """The genre to store for what the user sent; GenreRefused / BadGenre otherwise."""
    from storage.genres import GenreNameError, alias_map, check_name, fold, normalise

    if not isinstance(text, str):
        raise BadGenre("genre must be a string")
    try:
        typed = check_name(text)  # the rule every genre entering genred passes
    except GenreNameError as e:
        raise BadGenre(str(e)) from e
    known = {name.lower(): name for name in vocabulary(engine, cfg).names()}
    if typed.lower() in known:
        return known[typed.lower()]
    if fold(typed) in alias_map(cfg.aliases):
        canonical = normalise(typed, cfg.aliases)
        return known.get(canonical.lower(), canonical)
    if new_genre:
        return typed
    close = difflib.get_close_matches(typed.lower(), list(known), n=3, cutoff=0.6)
    raise GenreRefused(typed, [known[c] for c in close])


def label_tracks(engine: Engine, cfg: Config, paths: list[str], genre: str) -> int:
    """Make ``genre`` the user label of every path; returns how many changed. Tags are
    written as `genred correct` writes them when ``write_tags`` is on."""
    from storage.corrections import ADDED, add_label

    added = [r.path for r in (add_label(engine, p, genre) for p in paths) if r.outcome == ADDED]
    if cfg.write_tags and added:
        write_tags(engine, cfg, added)
    return len(added)


def write_tags(engine: Engine, cfg: Config, paths: list[str]) -> None:
    from storage.tagging import TagPolicy, write_track

    policy = TagPolicy(cfg.tag_threshold, cfg.overwrite_existing, False)
    for path in paths:
        write_track(engine, path, policy)


def unlabel_track(engine: Engine, cfg: Config, path: str) -> int:
    """Drop the track's labels (history kept), as `genred uncorrect` does."""
    from storage.corrections import remove_label

    removed = remove_label(engine, path)
    if cfg.write_tags and removed:
        write_tags(engine, cfg, [path])
    return removed
