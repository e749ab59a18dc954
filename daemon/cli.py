"""The `genred` command: parses, calls, prints. Thin by design.

Each group of verbs lives in its own module (``cli_classify``, ``cli_catalogue``,
``cli_service``) with a ``register(subparsers, common)`` function. Those modules must not
import torch, librosa or SQLAlchemy at module level: ``genred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from daemon import cli_catalogue, cli_classify, cli_genres, cli_hosts, cli_service, cli_web
from daemon.cli_output import guard_stdout
from daemon.config import Config, ConfigError, load, setting_name
from storage.genres import GenreNameError

log = logging.getLogger(__name__)

# A handler takes the parsed arguments and the effective config; returns the exit code.
Handler = Callable[[argparse.Namespace, Config], int]

EXIT_FAILED, EXIT_USAGE = 1, 2


def _common_options() -> argparse.ArgumentParser:
    """Options every verb takes, before or after the verb."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="FILE", help="config file (TOML)")
    common.add_argument("--db", metavar="URL", help="catalogue: SQLAlchemy URL or SQLite path")
    common.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log verbosity on stderr (default INFO)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="genred",
        description="Genre-classifying daemon for music libraries.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in (cli_classify, cli_catalogue, cli_genres, cli_service, cli_hosts, cli_web):
        module.register(sub, common)
    return parser


def config_loader(args: argparse.Namespace) -> Callable[[], Config]:
    """Reads the effective config for these arguments (again, on each call: the daemon
    re-reads it on SIGHUP, with the same command line winning over the file)."""
    # A verb's flag that overrides a config key uses dest="cfg_<key>" (e.g. cfg_workers,
    # cfg_retrain_schedule); None means "not given".
    overrides = {k.removeprefix("cfg_"): v for k, v in vars(args).items() if k.startswith("cfg_")}
    overrides["db"] = getattr(args, "db", None)
    overrides["log_level"] = getattr(args, "log_level", None)
    path = getattr(args, "config", None)
    return lambda: load(path, overrides)


def setup_logging(level: str) -> None:
    """stderr, no timestamps when journald adds its own (it sets JOURNAL_STREAM)."""
    import os

    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        cfg = config_loader(args)()
    except ConfigError as e:
        print(f"genred: {e}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(cfg.log_level)
    guard_stdout()
    handler: Handler = args.handler
    try:
        code = handler(args, cfg)
        sys.stdout.flush()  # a failed write of the output is reported below, not at exit
        return code
    except (ConfigError, GenreNameError) as e:
        print(f"genred: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`genred query | head`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:
        status = _os_fault(e)
        if status is None:
            raise
        return status
    except Exception as e:
        status = _catalogue_fault(e, cfg)
        if status is None:
            raise
        return status


def _os_fault(error: OSError) -> int | None:
    """One line for an OSError no command handled, or None when it is not the user's to
    fix: the output could not be written (stdout on a full disk or ``/dev/full``, a terminal
    gone: ``cannot write the output: no space left on device``), or a file genred had to
    read or write names itself."""
    import os

    from daemon.cli_output import discard_output, output_failed
    from storage.names import shown

    reason = error.strerror or str(error) or type(error).__name__
    reason = reason[:1].lower() + reason[1:]
    if output_failed(error):
        # What is still buffered cannot be written either: drop it, or the interpreter's
        # final flush fails again ("Exception ignored ...").
        discard_output()
        print(f"genred: cannot write the output: {reason}", file=sys.stderr)
        return EXIT_FAILED
    if error.filename is None:
        return None
    print(f"genred: {shown(os.fsdecode(error.filename))}: {reason}", file=sys.stderr)
    return EXIT_FAILED


def _catalogue_fault(error: Exception, cfg: Config) -> int | None:
    """Print the one-line message of a catalogue fault and give the exit status (2 for a
    URL that cannot be used, else 1), or None when ``error`` is not one. The storage layer
    raises its own types (storage/faults.py); a driver error it could not classify (another
    database's, say) still gets one line: its first, the full traceback at DEBUG."""
    if "storage.faults" not in sys.modules:  # nothing opened a catalogue: not ours
        return None
    from sqlalchemy.exc import DBAPIError

    from storage.faults import CatalogueError, CatalogueURLError

    if isinstance(error, CatalogueURLError):
        print(f"genred: {setting_name(cfg, 'db')}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, CatalogueError):
        message = str(error)
    elif isinstance(error, DBAPIError):
        log.debug("catalogue error", exc_info=error)
        first = (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]
        message = f"the catalogue {cfg.db_url} failed: {first}"
    else:
        return None
    print(f"genred: {' '.join(message.split())}", file=sys.stderr)  # one line, always
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
