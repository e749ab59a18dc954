"""The genre vocabulary at the command line: ``genred genres`` (list, rename, merge) and
the rule ``correct`` and ``import-tags`` share for names nobody used before.

Examples::

    genred genres                           # known genres, with track and label counts
    genred genres rename "Hiphop" "Hip-Hop" # a misspelt genre, everywhere
    genred genres merge Synthpop Electronic # two names for one genre: keep the second

The known genres are the active model's labels and the genres of labels. A name matches a
known genre case-insensitively (the first spelling used is the one shown), then the alias
map; anything else is a new genre, accepted only when asked for (``--new-genre``) and then
kept exactly as typed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daemon.config import Config

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("genres", parents=[common], help="the known genres; rename or merge",
                       description="List the known genres (the active model's and those of "
                       "your labels) with track and label counts, or fix one everywhere.")
    p.add_argument("--format", choices=["table", "json"], default="table")
    verbs = p.add_subparsers(dest="genres_verb", metavar="rename|merge")
    r = verbs.add_parser("rename", parents=[common], help="rename a genre everywhere",
                         description="Rename genre OLD to NEW in labels, in how predictions "
                         "are shown (now and later) and in the tags genred wrote.")
    r.add_argument("old", metavar="OLD")
    r.add_argument("new", metavar="NEW")
    r.set_defaults(handler=_rename)
    m = verbs.add_parser("merge", parents=[common], help="fold genre A into genre B",
                         description="Make every label and prediction of A one of B "
                         "(probabilities added up), and rewrite the tags genred wrote.")
    m.add_argument("old", metavar="A")
    m.add_argument("new", metavar="B")
    m.set_defaults(handler=_merge)
    p.set_defaults(handler=_list)


def model_labels(cfg: Config) -> list[str]:
    """The active (or pinned) model's genres; [] when there is no usable model."""
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound, ModelStore

    store = ModelStore(cfg.model_store_path)
    try:
        return read_meta(store.resolve(cfg.model) if cfg.model else store.active()).labels
    except (BundleError, ModelNotFound):
        return []


def known_genres(engine: Engine, cfg: Config) -> list[str]:
    """The vocabulary: the model's genres (as renamed), then the labels' genres, each once
    (case-insensitive), in the first spelling."""
    from storage.genres import fold
    from storage.vocabulary import label_genres, renames

    shown = renames(engine)
    out: dict[str, str] = {}
    for name in [shown.get(g, g) for g in model_labels(cfg)] + label_genres(engine):
        out.setdefault(fold(name), name)
    return list(out.values())


@dataclass
class Choice:
    """What each genre name given on the command line (or in a file) stands for."""

    genres: dict[str, str] = field(default_factory=dict)  # name as given -> genre
    new: list[str] = field(default_factory=list)  # genres no one used before
    unknown: dict[str, list[str]] = field(default_factory=dict)  # name -> suggestions
    aliased: dict[str, str] = field(default_factory=dict)  # an alias given -> its genre

    def notes(self) -> list[str]:
        return [f"{name!r} is an alias of {genre} (--new-genre keeps {name!r} as a genre of "
                "its own)" for name, genre in self.aliased.items()]


def choose(names: Iterable[str], known: list[str], new_ok: bool, cfg: Config) -> Choice:
    """Resolve ``names`` against ``known``; an unknown one is new (spelt as given) when
    ``new_ok``, else listed with the closest known names."""
    from storage.genres import fold, resolve, spelled, suggestions

    vocabulary = list(known)
    choice = Choice()
    for name in names:
        if name in choice.genres or name in choice.unknown:
            continue
        # With --new-genre the user says what the name is: a known genre still matches,
        # but the alias map no longer folds "IDM" or "Drum & Bass" into Electronic.
        genre = resolve(name, vocabulary, cfg.genre_aliases, aliases=not new_ok)
        if genre is not None and fold(genre) != fold(name):
            choice.aliased[name] = genre
        if genre is None and new_ok:
            genre = spelled(name)
            vocabulary.append(genre)  # "idm" after "IDM" in the same file: one genre
            choice.new.append(genre)
        if genre is None:
            choice.unknown[name] = suggestions(name, known)
        else:
            choice.genres[name] = genre
    return choice


def refusal(name: str, hints: list[str]) -> str:
    """One line for an unknown genre: the closest names and how to go on."""
    hint = f"did you mean {' or '.join(hints)}? " if hints else ""
    return (f"genred: unknown genre {name!r}: {hint}(`genred genres` lists the known ones; "
            "--new-genre adds a new one)")


def _open(cfg: Config) -> Engine | None:
    from storage.db import CatalogueError, open_catalogue

    try:
        return open_catalogue(cfg.db_url)
    except CatalogueError as e:
        print(f"genred: {e}", file=sys.stderr)
        return None


def _list(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.retrain import as_parents, present_labels, waiting_genres
    from storage.genres import fold
    from storage.vocabulary import counts, renames

    engine = _open(cfg)
    if engine is None:
        return EXIT_FAILED
    shown = renames(engine)
    in_model = {fold(shown.get(g, g)) for g in model_labels(cfg)}
    table = counts(engine)
    labels = present_labels(engine)
    parents = {fold(g): p for g, p in as_parents(labels, in_model,
                                                cfg.retrain.min_songs_per_genre,
                                                cfg.tree).items()}
    waiting = {fold(g): n for g, n in waiting_genres(
        labels, in_model, cfg.retrain.min_songs_per_genre).items()}
    rows: list[dict[str, Any]] = []
    for name in known_genres(engine, cfg):
        key = fold(name)
        c = table.get(key)
        if key in in_model:
            state = "in the model"
        elif key in waiting:
            state = (f"waiting: {waiting[key]} of {cfg.retrain.min_songs_per_genre} "
                     "labelled songs")
            if key in parents:
                state += f"; trains as {parents[key]} meanwhile"
        else:
            state = "new: joins the model at the next retrain"
        rows.append({"genre": name, "tracks": c.tracks if c else 0,
                     "labels": c.labels if c else 0, "state": state})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max([len(str(r["genre"])) for r in rows] + [5])
    print(f"{'GENRE':<{width}}  {'TRACKS':>6}  {'LABELS':>6}  STATE")
    for r in rows:
        print(f"{r['genre']:<{width}}  {r['tracks']:>6}  {r['labels']:>6}  {r['state']}")
    print(f"{len(rows)} genre(s); TRACKS: tracks showing the genre (label, else prediction)")
    return EXIT_OK


def _rename(args: argparse.Namespace, cfg: Config) -> int:
    return _rewrite(args, cfg, merge=False)


def _merge(args: argparse.Namespace, cfg: Config) -> int:
    return _rewrite(args, cfg, merge=True)


def _rewrite(args: argparse.Namespace, cfg: Config, merge: bool) -> int:
    from storage.genres import check_name, fold, resolve, spelled, suggestions
    from storage.vocabulary import rename

    engine = _open(cfg)
    if engine is None:
        return EXIT_FAILED
    for name in (args.old, args.new):
        if not fold(name):  # blank, "_": no name at all (check_name says why)
            check_name(name)
    known = known_genres(engine, cfg)
    old = resolve(args.old, known)
    if old is None or fold(old) != fold(args.old):
        print(refusal(args.old, suggestions(args.old, known)).split(" (")[0], file=sys.stderr)
        return EXIT_USAGE
    target = resolve(args.new, known)
    if merge and target is None:
        print(refusal(args.new, suggestions(args.new, known)).split(" (")[0]
              + " (merge needs two known genres; use rename for a new name)", file=sys.stderr)
        return EXIT_USAGE
    if not merge and target is not None and fold(target) != fold(old):
        print(f"genred: {target} is already a genre: `genred genres merge {old} {target}` "
              "folds one into the other", file=sys.stderr)
        return EXIT_USAGE
    new = target if merge and target else spelled(args.new)
    result = rename(engine, old, new)
    tags = _retag(engine, result.retag, cfg)
    verb = "merged into" if merge else "renamed to"
    print(f"{old} {verb} {new}: {result.labels} label(s), {result.predictions} "
          f"prediction(s), {tags} file tag(s) rewritten")
    return EXIT_OK


def _retag(engine: Engine, paths: list[str], cfg: Config) -> int:
    """Rewrite the tags genred wrote on ``paths`` (the genre they show was renamed). No
    threshold: the file already carries genred's answer under the old name; a genre the
    user changed since is left alone (the tag policy's own rule)."""
    from storage.tagging import WRITTEN, policy_from, write_track

    policy = policy_from(cfg, threshold=0.0)
    written = 0
    for path in paths:
        outcome = write_track(engine, path, policy)
        written += outcome.action == WRITTEN
        if outcome.action not in (WRITTEN, "skipped"):
            print(outcome.line())
    return written


def describe_new(new: list[str], counts: dict[str, int] | None = None) -> str:
    """"new genre(s): IDM (3 files), SynSwing" for the summary of a command."""
    parts = [f"{g} ({counts[g]} file(s))" if counts and g in counts else g for g in new]
    return "new genre(s): " + ", ".join(parts)


def as_json(choice: Choice) -> dict[str, Any]:
    return {"genres": choice.genres, "new": choice.new, "unknown": choice.unknown}
