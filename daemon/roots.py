"""The folders `genred run` watches: the config's ``watch`` list resolved and checked, so
a missing folder or an empty list ends the start with a message that names the setting to
fix (the daemon checks them again on SIGHUP)."""

from __future__ import annotations

from pathlib import Path

from daemon.config import Config, ConfigError
from daemon.queue_runner import DaemonError


def watch_roots(cfg: Config) -> list[str]:
    """The watched folders, resolved; a missing one is a ConfigError naming its setting."""
    if not cfg.watch:
        raise DaemonError("no folders to watch: give --watch PATH or set watch = [...] in "
                          "the config file")
    from daemon.config import setting_name
    from daemon.userpaths import missing_message
    from storage.names import shown
    from storage.paths import is_gone

    roots: list[str] = []
    for folder in cfg.watch:
        path = Path(folder).expanduser().resolve()
        # The missing-path rule of every command (exit 2), naming where the folder came
        # from: GENRED_WATCH, the config key and file (`--watch` is checked before this).
        if is_gone(path):
            raise ConfigError(f"{setting_name(cfg, 'watch')}: {missing_message(folder)}")
        if not path.is_dir():
            raise ConfigError(f"{setting_name(cfg, 'watch')}: {shown(folder)} is not a folder")
        roots.append(str(path))
    return roots
