"""Verbs on the files' genre tags: ``tags write``, ``tags restore``; and the tag policy
the other verbs that write tags share (``scan --write-tags``, ``correct``, ``uncorrect``):
its flags, the policy from the config, one line per file written or refused.

Examples::

    genred tags write --tag-threshold 0.7 ~/Music
    genred tags write --pretend               # list what would change
    genred tags restore ~/Music

Exit status: 0 when the verb ran (per-file problems are reported, not fatal); 1 when the
catalogue cannot be opened; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon.cli_output import counts_line, on_catalogue
from daemon.config import Config, flag_type
from daemon.userpaths import shown

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from storage.tagging import TagOutcome

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def tag_policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag-threshold", dest="cfg_tag_threshold", type=flag_type("tag_threshold"),
                   default=None,
                   metavar="P", help="write a predicted genre only at this confidence or more "
                   "(config tag_threshold, default 0.5); corrections are always written")
    p.add_argument("--overwrite-existing", dest="cfg_overwrite_existing", action="store_const",
                   const=True, default=None,
                   help="replace a genre the file already has (config overwrite_existing)")
    p.add_argument("--pretend", action="store_true",
                   help="list what would change; touch no file")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``tags write`` and ``tags restore``."""
    tags = sub.add_parser("tags", parents=[common], help="write or restore genre tags")
    verbs = tags.add_subparsers(dest="tags_verb", metavar="ACTION")
    p = verbs.add_parser("write", parents=[common], help="write genres into files' tags",
                         description="Apply the tag policy to catalogued tracks (all, or "
                         "those under PATH). The first write backs up the original values.")
    p.add_argument("paths", nargs="*", metavar="PATH")
    tag_policy_flags(p)
    p.set_defaults(handler=on_catalogue(_tags_write))
    p = verbs.add_parser("restore", parents=[common], help="put the original tags back",
                         description="Restore the genre values files had before genred "
                         "wrote them, where the file still holds what genred wrote.")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--pretend", action="store_true", help="list what would change")
    p.set_defaults(handler=on_catalogue(_tags_restore))
    tags.set_defaults(handler=lambda args, cfg: _usage(tags))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    return EXIT_USAGE


def tag_policy(args: argparse.Namespace, cfg: Config) -> Any:
    from storage.tagging import policy_from

    return policy_from(cfg, getattr(args, "pretend", False))


def print_outcome(outcome: TagOutcome) -> None:
    print(shown(outcome.line()))


def write_tags_for(engine: Engine, paths: list[str], policy: Any) -> dict[str, int]:
    from storage.tagging import SKIPPED, write_track

    counts: dict[str, int] = {}
    for path in paths:
        outcome = write_track(engine, path, policy)
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
        if outcome.action != SKIPPED or policy.pretend:
            print_outcome(outcome)
    return counts


def catalogued(engine: Engine, paths: list[str]) -> list[str]:
    from storage.catalogue import tracks_under

    found: set[str] = set()
    for path in paths or ["/"]:
        found |= {t.path for t in tracks_under(engine, path)}
    return sorted(found)


def _tags_write(args: argparse.Namespace, cfg: Config, engine: Engine) -> int:
    counts = write_tags_for(engine, catalogued(engine, args.paths), tag_policy(args, cfg))
    print(counts_line(counts, "no tracks"))
    return EXIT_OK


def _tags_restore(args: argparse.Namespace, cfg: Config, engine: Engine) -> int:
    from storage.tagging import backed_up_paths, restore_track

    paths = sorted({p for folder in (args.paths or [None]) for p in
                    backed_up_paths(engine, folder)})
    counts: dict[str, int] = {}
    for path in paths:
        outcome = restore_track(engine, path, pretend=args.pretend,
                                split_hard_links=cfg.split_hard_links)
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
        print_outcome(outcome)
    print(counts_line(counts, "nothing to restore"))
    return EXIT_OK
