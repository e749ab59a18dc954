"""Corrections from the page: the genre the user meant, then the same storage calls as
``genred correct`` (``storage.genres.normalise`` + ``storage.corrections.add_label``, and
the tag policy when ``write_tags`` is on).

The vocabulary rule of issue 10 is `genred correct`'s own (``daemon.cli_genres``): a
genre that is neither known (the model's genres, the labels' genres) nor an alias is
refused with the closest known names, unless the request says ``new_genre``; a known genre
is stored in its first spelling whatever the case typed; a new one keeps the user's.
"""

from __future__ import annotations

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
    model: list[str]  # the active (or pinned) model's labels
    known: list[str]  # what `genred correct` accepts: the model's genres, then the labels'

    def names(self) -> list[str]:
        return sorted(self.known, key=str.lower)


def vocabulary(engine: Engine, cfg: Config) -> Vocabulary:
    from daemon.cli_genres import known_genres, model_labels

    return Vocabulary(model_labels(cfg), known_genres(engine, cfg))


def resolve_genre(engine: Engine, cfg: Config, text: object, new_genre: bool) -> list[str]:
    """The genres to store for what the user sent, main first: one name, several in one
    text ("Rock; Blues") or a list of names, each by the rules of `genred correct`
    (``daemon.cli_genres.choose``: a known genre in its first spelling, an alias's
    genre, or with ``new_genre`` a new one spelt as given); GenreRefused / BadGenre."""
    from daemon.cli_genres import choose, known_genres
    from storage.genres import GenreNameError, check_name, split_list, unique

    if isinstance(text, str):
        names: list[object] = list(split_list(text)) or [text]
    elif isinstance(text, list) and text:
        names = list(text)
    else:
        raise BadGenre("genre must be a string or a non-empty list of strings")
    if not all(isinstance(n, str) for n in names):
        raise BadGenre("genre must be a string or a non-empty list of strings")
    try:
        typed = [check_name(str(n)) for n in names]  # the rule every genre entering passes
        choice = choose(typed, known_genres(engine, cfg), new_genre, cfg)
    except (GenreNameError, ValueError) as e:
        raise BadGenre(str(e)) from e
    for name in typed:
        if name in choice.unknown:
            raise GenreRefused(name, choice.unknown[name])
    return unique(choice.genres[n] for n in typed)


def label_tracks(engine: Engine, cfg: Config, paths: list[str], genre: str | list[str]) -> int:
    """Make ``genre`` (or several, main first) the user label of every path; returns how
    many changed. Tags are written as `genred correct` writes them when ``write_tags`` is
    on."""
    from storage.corrections import ADDED, add_label

    added = [r.path for r in (add_label(engine, p, genre) for p in paths) if r.outcome == ADDED]
    if cfg.write_tags and added:
        write_tags(engine, cfg, added)
    return len(added)


def write_tags(engine: Engine, cfg: Config, paths: list[str]) -> None:
    from storage.tagging import policy_from, write_track

    policy = policy_from(cfg)
    for path in paths:
        write_track(engine, path, policy)


def unlabel_track(engine: Engine, cfg: Config, path: str) -> int:
    """Drop the track's labels (history kept), as `genred uncorrect` does."""
    from storage.corrections import remove_label

    removed = remove_label(engine, path)
    if cfg.write_tags and removed:
        write_tags(engine, cfg, [path])
    return removed
