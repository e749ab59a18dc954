"""Where genred's files are: the config file (looked for, then read as small UTF-8 TOML)
and the data and cache folders.

The config file, first found wins: ``--config FILE``, ``$GENRED_CONFIG``,
``$XDG_CONFIG_HOME/genred/config.toml`` (``~/.config/...``), ``/etc/genred/config.toml``.
Data (catalogue, model store) and caches: systemd's ``$STATE_DIRECTORY`` /
``$CACHE_DIRECTORY`` when set, else the XDG folders.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from daemon.config_values import MAX_CONFIG_BYTES, ConfigError


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def data_dir() -> Path:
    """Where the catalogue and model store live: $STATE_DIRECTORY (systemd) or XDG data."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    return _xdg("XDG_DATA_HOME", ".local/share") / "genred"


def cache_dir() -> Path:
    """Where caches live: $CACHE_DIRECTORY (systemd) or XDG cache."""
    cache = os.environ.get("CACHE_DIRECTORY")
    if cache:
        return Path(cache.split(":")[0])
    return _xdg("XDG_CACHE_HOME", ".cache") / "genred"


def config_file(explicit: str | None = None, named: str = "--config") -> Path | None:
    """The config file to read, or None when there is none (defaults then apply). A file
    named by ``--config`` or ``GENRED_CONFIG`` (``named``) must be one: a path that does not
    exist is the missing-path error of every command, naming where it came from."""
    from storage.names import shown

    if explicit:
        path = Path(explicit).expanduser()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ConfigError(f"{named}: no such file or folder: {shown(path)}") from None
        except OSError as e:
            raise ConfigError(f"{named}: cannot read {shown(path)}: {e.strerror}") from e
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{named}: {shown(path)} is a folder, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{named}: {shown(path)} is not a regular file (a TOML file "
                              "is needed)")
        return path
    if os.environ.get("GENRED_CONFIG"):
        return config_file(os.environ["GENRED_CONFIG"], "GENRED_CONFIG")
    for candidate in searched():
        if candidate.is_file():
            return candidate
    return None


def searched() -> list[Path]:
    """Where a config file is looked for when neither --config nor GENRED_CONFIG names one."""
    return [_xdg("XDG_CONFIG_HOME", ".config") / "genred" / "config.toml",
            Path("/etc/genred/config.toml")]


def read_toml(file: Path) -> dict[str, Any]:
    """The config file's tables; ConfigError for one that is not small UTF-8 TOML."""
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e.strerror}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{file}: line {line} is not UTF-8 text (save the file as UTF-8)"
                          ) from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{file}: not valid TOML: values nested too deeply") from e
