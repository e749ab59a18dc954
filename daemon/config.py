"""One typed config: TOML file < ``GENRED_*`` environment < command-line flags.

Validated once, at start; a bad value fails with a message naming the key. Where it is read
from, in order (first found wins): ``--config FILE``, ``$GENRED_CONFIG``,
``$XDG_CONFIG_HOME/genred/config.toml`` (``~/.config/...``), ``/etc/genred/config.toml``.

Example ``config.toml`` (every key optional)::

    db = "sqlite:////var/lib/genred/catalogue.db"
    watch = ["/srv/music"]
    settle_seconds = 5
    write_tags = true
    tag_threshold = 0.6

    [retrain]
    schedule = "0 3 * * *"      # cron: minute hour day month day-of-week
    min_new_labels = 10

    [aliases]                   # extra genre aliases, merged over the built-in map
    "nu jazz" = "Jazz"

    [paths]                     # a worker host: the catalogue's prefix = this host's
    "/srv/music" = "/mnt/nas/music"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from storage.genres import alias_map, fold

# Where a value came from, lowest precedence first (``Config.origin``).
DEFAULT, FILE, ENV, FLAG = "default", "file", "env", "flag"


class ConfigError(Exception):
    """A config value is missing, malformed or of the wrong type; the message names the key."""


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
    cache = os.environ.get("CACHE_DIRECTORY")
    if cache:
        return Path(cache.split(":")[0])
    return _xdg("XDG_CACHE_HOME", ".cache") / "genred"


@dataclass(frozen=True)
class RetrainConfig:
    schedule: str = "0 3 * * *"
    min_new_labels: int = 1
    epochs: int = 15


@dataclass(frozen=True)
class Config:
    db: str = ""  # SQLAlchemy URL; "" = sqlite file in data_dir()
    model: str = ""  # bundle dir or version id; "" = the active model (else the bundled one)
    model_store: str = ""  # "" = data_dir()/models
    cache: str = ""  # feature cache; "" = cache_dir()
    watch: tuple[str, ...] = ()
    settle_seconds: float = 5.0
    rescan_hours: float = 6.0
    workers: int = 0  # 0 = all cores
    clips_per_track: int = 3
    write_tags: bool = False
    tag_threshold: float = 0.5
    overwrite_existing: bool = False
    log_level: str = "INFO"
    # How long a worker's claim on a track lasts without a heartbeat (workers beat every
    # quarter of it): a worker killed or cut off loses its tracks after this long.
    lease_seconds: float = 60.0
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Catalogue path prefix -> this host's (hosts mounting the library elsewhere).
    paths: Mapping[str, str] = field(default_factory=dict)
    source: str = "defaults"  # which file was read, for `genred config show`
    # Setting ("settle_seconds", "retrain.epochs", "aliases.nu jazz") -> FILE, ENV or FLAG,
    # for those not left at their default.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{data_dir() / 'catalogue.db'}"

    @property
    def model_store_path(self) -> Path:
        return Path(self.model_store).expanduser() if self.model_store else data_dir() / "models"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache).expanduser() if self.cache else cache_dir()

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def origin(self, key: str) -> str:
        """Where setting ``key`` came from: "default", "file", "env" or "flag". Built-in
        aliases are "default"; ``key`` for an alias is ``aliases.<folded name>``."""
        return self.origins.get(key, DEFAULT)

    def effective(self) -> dict[str, Any]:
        """What genred uses, JSON-ready, each setting once under its config-file name:
        ``db``, ``model_store`` and ``cache`` resolved to the URL/paths in use, ``model``
        None when no model is pinned (the active one is used), ``aliases`` the built-in
        map with the config's merged over it (keys folded as lookups fold them),
        ``origins`` where each of those came from, and ``source`` the file read."""
        resolved: dict[str, Any] = {"db": self.db_url, "model": self.model or None,
                                    "model_store": str(self.model_store_path),
                                    "cache": str(self.cache_path)}
        out: dict[str, Any] = {}
        for name in _TOP_KEYS:
            value = resolved.get(name, getattr(self, name))
            out[name] = list(value) if isinstance(value, tuple) else value
        out["retrain"] = {f.name: getattr(self.retrain, f.name) for f in fields(self.retrain)}
        aliases = alias_map(self.aliases)
        out["aliases"] = dict(sorted(aliases.items()))
        out["paths"] = dict(self.paths)
        settings = [*_TOP_KEYS, *(f"retrain.{k}" for k in _RETRAIN_KEYS),
                    *(f"aliases.{k}" for k in out["aliases"])]
        out["origins"] = {key: self.origin(key) for key in settings}
        out["source"] = self.source
        return out


_TOP_KEYS = {f.name: f for f in fields(Config)
             if f.name not in ("retrain", "aliases", "paths", "source", "origins")}
_RETRAIN_KEYS = {f.name: f for f in fields(RetrainConfig)}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Turn a TOML/env/flag value into the type of the field's default, or name the key."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(p for p in value.split(os.pathsep) if p)
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError("expected a list of paths")
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key '{key}': {e} (got {value!r})") from e
    raise ConfigError(f"config key '{key}': unsupported value {value!r}")


def _validate(cfg: Config) -> Config:
    if cfg.settle_seconds < 0:
        raise ConfigError("config key 'settle_seconds': must be >= 0")
    if not 0.0 <= cfg.tag_threshold <= 1.0:
        raise ConfigError("config key 'tag_threshold': must be between 0 and 1")
    if cfg.workers < 0:
        raise ConfigError("config key 'workers': must be >= 0 (0 = all cores)")
    if cfg.clips_per_track < 1:
        raise ConfigError("config key 'clips_per_track': must be >= 1")
    if cfg.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"config key 'log_level': one of {', '.join(_LOG_LEVELS)}")
    if len(cfg.retrain.schedule.split()) != 5:
        raise ConfigError(
            "config key 'retrain.schedule': a cron line of 5 fields, e.g. '0 3 * * *'"
        )
    if cfg.rescan_hours <= 0:
        raise ConfigError("config key 'rescan_hours': must be > 0 (e.g. 6)")
    if cfg.retrain.epochs < 1:
        raise ConfigError("config key 'retrain.epochs': must be >= 1")
    if cfg.lease_seconds < 2:
        raise ConfigError("config key 'lease_seconds': must be >= 2 (e.g. 60)")
    if cfg.retrain.min_new_labels < 0:
        raise ConfigError("config key 'retrain.min_new_labels': must be >= 0")
    return replace(cfg, log_level=cfg.log_level.upper())


def _apply(cfg: Config, values: Mapping[str, Any], origin: str, kind: str) -> Config:
    """Overlay ``values`` (top-level keys, a ``retrain`` table, an ``aliases`` table) read
    from ``origin`` (named in errors), recording ``kind`` (FILE, ENV, FLAG) as their origin."""
    top: dict[str, Any] = {}
    retrain: dict[str, Any] = {}
    aliases = dict(cfg.aliases)
    paths = dict(cfg.paths)
    origins = dict(cfg.origins)
    for key, value in values.items():
        if key == "retrain":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: 'retrain' must be a table")
            for rkey, rvalue in value.items():
                if rkey not in _RETRAIN_KEYS:
                    raise ConfigError(f"{origin}: unknown config key 'retrain.{rkey}'")
                default = getattr(cfg.retrain, rkey)
                retrain[rkey] = _coerce(f"retrain.{rkey}", rvalue, default)
                origins[f"retrain.{rkey}"] = kind
        elif key == "aliases":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"{origin}: 'aliases' must be a table of name = \"Genre\"")
            aliases.update(value)
            origins.update({f"aliases.{fold(name)}": kind for name in value})
        elif key == "paths":
            paths.update(_path_table(origin, value))
        elif key in _TOP_KEYS:
            top[key] = _coerce(key, value, getattr(cfg, key))
            origins[key] = kind
        else:
            raise ConfigError(f"{origin}: unknown config key '{key}'")
    return replace(cfg, **top, retrain=replace(cfg.retrain, **retrain), aliases=aliases,
                   paths=paths,
                   origins=origins)


def _path_table(origin: str, value: Any) -> dict[str, str]:
    """``[paths]``: absolute catalogue prefix = absolute local prefix."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{origin}: 'paths' must be a table of \"/catalogue/prefix\" = "
                          "\"/local/prefix\"")
    for key, local in value.items():
        if not (key.startswith("/") and local.startswith("/")):
            raise ConfigError(f"config key 'paths.{key}': both prefixes must be absolute "
                              f"(got {key!r} = {local!r})")
    return {os.path.normpath(k): os.path.normpath(v) for k, v in value.items()}


def config_file(explicit: str | None = None) -> Path | None:
    """The config file to read, or None when there is none (defaults then apply)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    if os.environ.get("GENRED_CONFIG"):
        return config_file(os.environ["GENRED_CONFIG"])
    for candidate in (
        _xdg("XDG_CONFIG_HOME", ".config") / "genred" / "config.toml",
        Path("/etc/genred/config.toml"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    retrain: dict[str, Any] = {}
    for key in _TOP_KEYS:
        env = f"GENRED_{key.upper()}"
        if env in environ:
            values[key] = environ[env]
    for key in _RETRAIN_KEYS:
        env = f"GENRED_RETRAIN_{key.upper()}"
        if env in environ:
            retrain[key] = environ[env]
    if retrain:
        values["retrain"] = retrain
    return values


def load(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config. ``overrides`` are command-line values (None = not given);
    nested retrain keys may be passed as ``retrain_<key>``."""
    cfg = Config()
    file = config_file(path)
    if file is not None:
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: not valid TOML: {e}") from e
        except OSError as e:
            raise ConfigError(f"{file}: cannot read: {e.strerror}") from e
        cfg = _apply(cfg, data, str(file), FILE)
        cfg = replace(cfg, source=str(file))
    cfg = _apply(cfg, _from_env(os.environ if environ is None else environ), "environment",
                 ENV)
    if overrides:
        flat: dict[str, Any] = {}
        retrain: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if key.startswith("retrain_"):
                retrain[key.removeprefix("retrain_")] = value
            else:
                flat[key] = value
        if retrain:
            flat["retrain"] = retrain
        cfg = _apply(cfg, flat, "command line", FLAG)
    return _validate(cfg)
