"""Verbs on the catalogue: ``scan``, ``query``, ``stats``, ``correct``, ``uncorrect``,
``import-tags``; ``tags write`` and ``tags restore`` are registered here from
daemon/cli_tags.py (with the tag policy flags these verbs share).

Examples::

    genred scan ~/Music                       # classify new/changed files, record them
    genred scan ~/Music --write-tags --pretend
    genred query --genre jazz --min-confidence 0.8
    genred query --uncorrected --sort confidence --limit 20 --format json
    genred query --status error               # files that could not be read, and why
    genred query --artist "Miles Davis" --album "Kind of Blue"
    genred query --albums --path ~/Music      # one row per album: its genre, who disagrees
    genred correct ~/Music/Album Jazz         # a file, or every track under a folder
    genred correct f.flac "Rock; Blues"       # several genres, the first the main one
    genred correct --from-csv labels.csv      # path,genre (header optional)
    genred uncorrect ~/Music/Album
    genred import-tags ~/Music                # genre tags the files carry -> labels
    genred tags write --tag-threshold 0.7 ~/Music
    genred tags restore ~/Music

Exit status: 0 when the verb ran (per-file problems are recorded and reported, not fatal);
1 when the catalogue or the model cannot be opened; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.cli_output import counts_line, on_catalogue
from daemon.cli_output import open_engine as _open
from daemon.cli_query import run_query, run_stats
from daemon.cli_tags import (
    catalogued,
    print_outcome,
    tag_policy,
    tag_policy_flags,
    write_tags_for,
)
from daemon.cli_tags import register as register_tags
from daemon.config import Config, flag_type
from daemon.userpaths import missing, missing_message, require_existing, shown

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATUSES = ("ok", "error", "missing", "pending")
SORTS = ("path", "genre", "confidence", "mtime", "status", "model", "seen", "duration",
         "artist", "album")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the catalogue verbs (heavy imports happen inside the handlers)."""
    _register_scan(sub, common)
    _register_query(sub, common)
    p = sub.add_parser("stats", parents=[common], help="counts per genre, status and model")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=run_stats)
    _register_corrections(sub, common)
    register_tags(sub, common)  # `tags write|restore`: daemon/cli_tags.py


def _register_scan(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("scan", parents=[common], help="classify a library into the catalogue",
                       description="Classify every audio file under PATH (recursively; by "
                       "extension and by content) and record it. Unchanged files are skipped.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or files")
    p.add_argument("--workers", dest="cfg_workers", type=flag_type("workers"), default=None,
                   metavar="N",
                   help="decode processes (default: all cores)")
    p.add_argument("--model", dest="cfg_model", default=None, metavar="M",
                   help="bundle directory or version id (default: the active model)")
    p.add_argument("--clips", dest="cfg_clips_per_track", type=flag_type("clips_per_track"),
                   default=None, metavar="K",
                   help="clips per track (default 3)")
    p.add_argument("--write-tags", dest="cfg_write_tags", action="store_const", const=True,
                   default=None, help="write genre tags as files are classified (write_tags)")
    p.add_argument("--force", action="store_true", help="re-classify unchanged files too")
    tag_policy_flags(p)
    p.set_defaults(handler=_scan)


def _register_query(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("query", parents=[common], help="list catalogued tracks",
                       description="List tracks; filters combine with AND. The genre shown "
                       "is the correction if there is one, else the prediction.")
    p.add_argument("--genre", help="effective genre (case-insensitive, aliases apply)")
    p.add_argument("--min-confidence", type=_probability, metavar="P",
                   help="predicted with at least this confidence (0 to 1)")
    p.add_argument("--max-confidence", type=_probability, metavar="P",
                   help="predicted with at most this confidence (0 to 1)")
    corrected = p.add_mutually_exclusive_group()
    corrected.add_argument("--corrected", dest="corrected", action="store_const", const=True,
                           help="only tracks whose genre a label set (genred correct, "
                           "import-tags): the rows marked * in the table")
    corrected.add_argument("--uncorrected", dest="corrected", action="store_const",
                           const=False, help="only tracks showing the model's prediction")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--path", dest="query_path", metavar="PATH",
                   help="only the tracks under this folder (exactly that folder: "
                   "case-sensitive, no wildcards), or this one file")
    p.add_argument("--model", dest="model_filter", metavar="VERSION",
                   help="predicted by this model version")
    p.add_argument("--artist", metavar="NAME",
                   help="the artist or album artist tag, read at scan time (whole name, "
                   "case-insensitive)")
    p.add_argument("--album", metavar="NAME",
                   help="the album tag, read at scan time (whole name, case-insensitive)")
    p.add_argument("--albums", action="store_true",
                   help="one row per album (album + album-artist tags, else the folder) of "
                   "the tracks the filters select: the genre its tracks agree on (mean of "
                   "their probabilities; a label counts as certain) and how many disagree")
    p.add_argument("--limit", type=_count, metavar="N", help="at most N tracks")
    p.add_argument("--sort", choices=SORTS, default="path",
                   help="tracks without a value (errors, pending) come last either way")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(handler=run_query)


def _probability(text: str) -> float:
    """A confidence bound. argparse turns ArgumentTypeError into a usage error (exit 2)
    that names the flag: ``argument --min-confidence: must be between 0 and 1, not 2``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also rejects nan and words
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


MAX_LIMIT = 1_000_000_000


def _count(text: str) -> int:
    try:
        value = int(text) if len(text) <= 20 else -1
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_LIMIT:,}, not {text[:40]}")
    return value


def _register_corrections(sub: argparse._SubParsersAction,
                          common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("correct", parents=[common], help="set the genre of tracks by hand",
                       description="Label a file, or every track under a folder. A "
                       "correction wins over predictions, in queries and in tags.")
    p.add_argument("path", nargs="?", metavar="PATH")
    p.add_argument("genre", nargs="?", metavar="GENRE",
                   help='a genre, or several main first: "Rock; Blues"')
    p.add_argument("--from-csv", metavar="FILE", help="CSV of path,genre (header optional; "
                   'a genre cell may name several: "Rock; Blues")')
    p.add_argument("--new-genre", action="store_true",
                   help="accept genres no model or label knows yet, spelt as given "
                   "(else a name that is neither known nor an alias is refused)")
    p.set_defaults(handler=_correct)
    p = sub.add_parser("uncorrect", parents=[common], help="drop corrections (kept as history)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.set_defaults(handler=on_catalogue(_uncorrect))
    p = sub.add_parser("import-tags", parents=[common],
                       help="take the genre tags files carry as labels",
                       description="Read genre tags under PATH, normalise them through the "
                       "alias map and record them as labels (source tag). User corrections "
                       "are never overridden; placeholder values (Other, Unknown, the "
                       "config's ignore_genres, ...) are skipped.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--pretend", action="store_true",
                   help="list what would become labels and which genres would be new; "
                   "record nothing")
    p.set_defaults(handler=on_catalogue(_import_tags))


# --- scan ------------------------------------------------------------------------------

def _scan(args: argparse.Namespace, cfg: Config) -> int:
    if not require_existing(args.paths):
        return EXIT_USAGE
    if cfg.worker_count > 1 and _may_use_the_pool(args.paths):
        from daemon.decoding import start_server

        start_server()  # it loads the decoders' modules while this process starts up
    classifier = _load_classifier(cfg)
    engine = _open(cfg)
    if classifier is None or engine is None:
        return EXIT_FAILED
    from tqdm import tqdm

    from daemon.worker import Worker

    policy = tag_policy(args, cfg) if (cfg.write_tags or args.pretend) else None
    from classifier.bundle import BundleError

    try:
        with tqdm(unit="file", disable=not sys.stderr.isatty(), file=sys.stderr) as bar, \
                Worker(engine, classifier, cfg, tag_policy=policy, progress=bar,
                       on_tag=print_outcome if policy else None) as worker:
            summary = worker.scan(args.paths, force=args.force)
        from datetime import UTC, datetime

        from daemon.status import LAST_SCAN_KEY
        from storage.catalogue import set_state

        set_state(engine, LAST_SCAN_KEY, datetime.now(UTC).isoformat(timespec="seconds"))
    except BundleError as e:  # the model itself is unusable: no file would classify
        print(f"genred: cannot use the model: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(summary.line())
    return EXIT_OK


def _may_use_the_pool(paths: list[str]) -> bool:
    """A folder, or enough files that the worker decodes them in its pool (a few files are
    decoded in the scan's own process: no pool server to start)."""
    from daemon.worker import POOL_MIN_FILES

    return len(paths) >= POOL_MIN_FILES or any(os.path.isdir(p) for p in paths)


def _load_classifier(cfg: Config) -> Any:
    from classifier.bundle import BundleError
    from classifier.predict import Classifier
    from classifier.store import ModelNotFound, ModelStore

    try:
        return Classifier.load(cfg.model or None, store=ModelStore(cfg.model_store_path),
                               clips_per_track=cfg.clips_per_track)
    except (BundleError, ModelNotFound) as e:
        print(f"genred: cannot load the model: {e}", file=sys.stderr)
        return None


# --- corrections -----------------------------------------------------------------------

def _targets(engine: Engine, path: str) -> tuple[list[str], list[str]]:
    """(the tracks to label, the unreadable ones left out): a file, or every catalogued
    track and audio file under a folder — except, under a folder, files the catalogue
    recorded as unreadable (not audio, damaged): a genre for "the album" is not a genre for
    its broken or non-audio files. A file named alone is labelled whatever its status."""
    from daemon.walk import gather, looks_like_audio
    from storage.catalogue import canonical, tracks_under
    from storage.schema import ERROR

    tracks = tracks_under(engine, path)
    found = {t.path for t in tracks}
    unreadable: set[str] = set()
    if Path(path).is_dir():
        found |= {canonical(p) for p in gather([path])}
        unreadable = {t.path for t in tracks if t.status == ERROR}
    elif Path(path).is_file() and looks_like_audio(Path(path)):
        found.add(canonical(path))
    return sorted(found - unreadable), sorted(unreadable)


def _correct(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.cli_genres import choose, describe_new, known_genres, refusal
    from storage.corrections import ADDED, add_label, read_label_csv_lines
    from storage.genres import check_name, split_list, unique

    pair = args.path is not None and args.genre is not None  # "" is a (bad) genre: checked
    if bool(args.from_csv) == pair or (args.path and args.genre is None):
        print("genred: give PATH GENRE, or --from-csv FILE", file=sys.stderr)
        return EXIT_USAGE
    if not require_existing([args.from_csv or args.path]):
        return EXIT_USAGE
    engine = _open(cfg)
    if engine is None:
        return EXIT_FAILED
    if args.genre is not None:  # a name that cannot be a genre: usage error
        for name in split_list(args.genre) or [args.genre]:
            check_name(name)
    skipped = 0
    if args.from_csv:
        try:
            rows, problems = read_label_csv_lines(args.from_csv)
        except OSError as e:
            print(f"genred: cannot read {shown(args.from_csv)}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
        for problem in problems:  # built by storage; a genre in it is already escaped
            print(f"skipped {problem}")
        skipped += len(problems)
    else:
        rows = [(0, args.path, args.genre)]
    # "Rock; Blues": several genres, the first the main one; each name is checked alone.
    names = {genre: [check_name(n) for n in split_list(genre)] for _, _, genre in rows}
    choice = choose([n for parts in names.values() for n in parts],
                    known_genres(engine, cfg), args.new_genre, cfg)
    if choice.unknown:  # nothing is applied: a typo must not half-apply a file
        for name, hints in choice.unknown.items():
            lines = [str(n) for n, _, g in rows if name in names[g] and n]
            where = f" (line {', '.join(lines)} of {args.from_csv})" if lines else ""
            print(refusal(name, hints) + where, file=sys.stderr)
        if args.from_csv:
            print(f"genred: nothing applied from {args.from_csv}", file=sys.stderr)
        return EXIT_USAGE
    labels: list[tuple[str, list[str]]] = []
    for _, path, genre in rows:
        if missing([path]):  # the same rule (and words) as a missing PATH argument
            print(f"skipped: {missing_message(path)}")
            skipped += 1
            continue
        targets, unreadable = _targets(engine, path)
        for bad in unreadable:
            print(f"skipped {shown(bad)}: unreadable (genred query --status error says why)")
        skipped += len(unreadable)
        if not targets and not unreadable:
            print(f"skipped {shown(path)}: no audio file there")
            skipped += 1
        wanted = unique(choice.genres[n] for n in names[genre])
        labels += [(t, wanted) for t in targets]
    results = [add_label(engine, path, genres) for path, genres in labels]
    added = [r for r in results if r.outcome == ADDED]
    for r in added:
        print(f"corrected {shown(r.path)}: {r.shown()}")
    for note in choice.notes():
        print(note)
    if choice.new and results:
        print(describe_new(choice.new))
    print(f"{len(added)} corrected, {len(results) - len(added)} already had that genre"
          + (f", {skipped} skipped" if skipped else ""))
    if cfg.write_tags:
        write_tags_for(engine, [r.path for r in added], tag_policy(args, cfg))
    return EXIT_OK if results or not rows else EXIT_USAGE


def _uncorrect(args: argparse.Namespace, cfg: Config, engine: Engine) -> int:
    from storage.corrections import remove_label

    total = sum(remove_label(engine, path) for path in args.paths)
    print(f"{total} track{'' if total == 1 else 's'} uncorrected (history kept)")
    if cfg.write_tags and total:  # the files now get the prediction (where policy allows)
        write_tags_for(engine, catalogued(engine, args.paths), tag_policy(args, cfg))
    return EXIT_OK


def _import_tags(args: argparse.Namespace, cfg: Config, engine: Engine) -> int:
    from daemon.cli_genres import describe_new, known_genres
    from daemon.walk import Walk
    from storage.corrections import TAG_WOULD_IMPORT, TagImport, import_tag_label

    walk = Walk(args.paths)
    paths = [str(p) for p in walk]
    options = TagImport(known_genres(engine, cfg), cfg.genre_aliases, cfg.ignore_genres)
    # First every file's verdict without recording anything: new genres are reported
    # before any of them becomes a label.
    plans = [(path, import_tag_label(engine, path, options, pretend=True)) for path in paths]
    new: dict[str, int] = {}
    for _, plan in plans:
        if plan.outcome == TAG_WOULD_IMPORT:
            for genre in plan.new_genres:
                new[genre] = new.get(genre, 0) + 1
    if new:
        print(describe_new(list(new), new))
    counts: dict[str, int] = {}
    for path, plan in plans:
        result = plan if args.pretend else import_tag_label(engine, path, options)
        if args.pretend and result.outcome == TAG_WOULD_IMPORT:
            mark = " (new genre)" if result.new_genre else ""
            print(f"would import {shown(path)}: {result.genre}{mark}")
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    line = counts_line(counts, "no audio files")
    print(line + (f" ({walk.summary()})" if walk.summary() else ""))
    return EXIT_OK
