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
    max_genres = 2              # genres per track: the top one, plus others reaching
    secondary_threshold = 0.35  # this probability (max_genres = 1: the top one only)
    write_genres = "all"        # or "main": tags carry only the main genre
    genre_separator = "; "      # joins several genres where a tag holds one text (ID3v2.3)
    album_genres = false        # tags get the album's genre, unless a track is clearly
    album_margin = 0.3          # other: its own genre beats the album's by this much

    [retrain]
    schedule = "0 3 * * *"      # cron: minute hour day month day-of-week
    min_new_labels = 10
    min_songs_per_genre = 3     # a new genre waits until it has this many labelled songs
    min_holdout_songs = 10      # fewer held-out songs: judge by cross-validation

    [aliases]                   # extra genre aliases, merged over the built-in map
    "nu jazz" = "Jazz"

    [genre_tree]                # sub-genre = parent, over the built-in tree
    "Nu Jazz" = "Jazz"          # (write_parent_genres = true: tags say "Jazz; Nu Jazz")

    [paths]                     # a worker host: the catalogue's prefix = this host's
    "/srv/music" = "/mnt/nas/music"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from daemon.config_places import cache_dir, config_file, data_dir, read_toml
from daemon.config_values import (
    BOUNDS,
    ConfigError,
    coerce,
    in_bounds,
    path_table,
    separator_problem,
    url_problem,
)
from storage.genres import GenreNameError, alias_map, check_aliases, fold
from storage.genretree import GenreTree, GenreTreeError

# Where a value came from, lowest precedence first (``Config.origin``).
DEFAULT, FILE, ENV, FLAG = "default", "file", "env", "flag"


@dataclass(frozen=True)
class RetrainConfig:
    schedule: str = "0 3 * * *"
    min_new_labels: int = 1
    epochs: int = 15
    min_songs_per_genre: int = 3  # a new genre trains only with this many labelled songs
    min_holdout_songs: int = 10  # fewer held-out songs: judge by cross-validation
    threads: int = 0  # torch threads of the retrain process; 0 = all cores but one
    # A candidate must give the old model's genre on this share of held-out anchor tracks
    # (library tracks in genres no label covers), overall and per genre, to be promoted.
    min_anchor_agreement: float = 0.9
    min_genre_agreement: float = 0.7


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
    split_hard_links: bool = False  # tag a hard-linked file anyway (its other names keep the old)
    # Several genres per track: the top genre, plus any other whose probability reaches
    # secondary_threshold, at most max_genres (1 = the top genre only).
    max_genres: int = 2
    secondary_threshold: float = 0.35
    write_genres: str = "all"  # "all" genres into tags, or only the "main" one
    genre_separator: str = "; "  # where a tag holds one text (ID3v2.3): "Rock; Blues"
    # Tags of an album's tracks get the album's genre (``query --albums``) unless a track's
    # own confidence in its genre beats its probability of the album's by album_margin.
    album_genres: bool = False
    album_margin: float = 0.3
    # Sub-genres (storage.genretree): tags get each genre after its parents, "Electronic; House".
    write_parent_genres: bool = False
    log_level: str = "INFO"
    # genred web / run --web: where to listen; any address but loopback needs web_token
    web_host: str = "127.0.0.1"
    web_port: int = 8337
    web_token: str = ""  # or GENRED_WEB_TOKEN; `config show` prints it masked
    # Seconds a catalogue write waits for another program's write transaction before it
    # counts as a fault ("database is locked"; the daemon then retries with back-off).
    busy_timeout_seconds: float = 30.0
    # Genre tag values that are not genres; `import-tags` skips them (with the built-in
    # placeholders: Other, Unknown, Genre, "the genre", misc, ...).
    ignore_genres: tuple[str, ...] = ()
    # How long a worker's claim on a track lasts without a heartbeat (workers beat every
    # quarter of it): a worker killed or cut off loses its tracks after this long.
    lease_seconds: float = 60.0
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Sub-genre -> parent, over the built-in tree (``[genre_tree]``).
    genre_tree: Mapping[str, str] = field(default_factory=dict)
    # Catalogue path prefix -> this host's (hosts mounting the library elsewhere).
    paths: Mapping[str, str] = field(default_factory=dict)
    source: str = "defaults"  # which file was read, for `genred config show`
    # Setting ("settle_seconds", "retrain.epochs", "aliases.nu jazz") -> FILE, ENV or FLAG,
    # for those not left at their default.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def db_url(self) -> str:
        """The catalogue's SQLAlchemy URL. ``db`` (from any source) is a URL when it holds
        "://", else the path of an SQLite file (``~`` expanded, relative to the current
        folder)."""
        if not self.db:
            return f"sqlite:///{data_dir() / 'catalogue.db'}"
        if "://" in self.db:
            return self.db
        return f"sqlite:///{Path(self.db).expanduser().resolve()}"

    @property
    def model_store_path(self) -> Path:
        return Path(self.model_store).expanduser() if self.model_store else data_dir() / "models"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache).expanduser() if self.cache else cache_dir()

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    @property
    def tree(self) -> GenreTree:
        """The genre tree: built in, with ``[genre_tree]`` over it (checked at load)."""
        return GenreTree.built_in(self.genre_tree)

    @property
    def genre_aliases(self) -> dict[str, str]:
        """What a genre name may resolve through besides the built-in aliases: each
        ``[genre_tree]`` genre as itself (so "nu jazz" is "Nu Jazz"), then ``[aliases]``."""
        names = {name: name for pair in self.genre_tree.items() for name in pair}
        return {**names, **self.aliases}

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
            if name == "web_token" and value:
                value = "(set, hidden)"
            out[name] = list(value) if isinstance(value, tuple) else value
        out["retrain"] = {f.name: getattr(self.retrain, f.name) for f in fields(self.retrain)}
        aliases = alias_map(self.aliases)
        out["aliases"] = dict(sorted(aliases.items()))
        tree = self.tree
        out["genre_tree"] = dict(sorted((tree.names[k], p) for k, p in tree.parents.items()))
        out["paths"] = dict(self.paths)
        settings = [*_TOP_KEYS, *(f"retrain.{k}" for k in _RETRAIN_KEYS),
                    *(f"aliases.{k}" for k in out["aliases"])]
        out["origins"] = {key: self.origin(key) for key in settings}
        out["source"] = self.source
        return out


_TOP_KEYS = {f.name: f for f in fields(Config)
             if f.name not in ("retrain", "aliases", "genre_tree", "paths", "source",
                               "origins")}
_RETRAIN_KEYS = {f.name: f for f in fields(RetrainConfig)}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WRITE_GENRES = ("all", "main")


def flag_type(key: str) -> Callable[[str], Any]:
    """An argparse ``type=`` for the flag that sets numeric setting ``key``: the same
    parsing and BOUNDS as the config, so a bad value is a usage error naming the flag
    (``argument --clips: must be a number from 1 to 32 (clips), not 1e+20``)."""
    import argparse

    whole = isinstance(_default_of(key), int)

    def parse(text: str) -> Any:
        try:
            value: float = coerce(key, text, _default_of(key))
        except ConfigError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if whole else 'a number'}, not {text!r}") from None
        why = in_bounds(key, value)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value

    parse.__name__ = key
    return parse


def _default_of(key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(RetrainConfig() if section else Config(), name)


def setting_name(cfg: Config, key: str) -> str:
    """How the user set ``key``, for messages: the variable (``GENRED_WORKERS``), the flag
    (``--workers``) or the config key (``config key 'workers' in FILE``)."""
    origin = cfg.origin(key)
    return f"config key '{key}'" if origin == DEFAULT else _named(key, cfg.source, origin)


def _validate(cfg: Config) -> Config:
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{setting_name(cfg, key)}: {why}")

    for key in BOUNDS:
        section, _, name = key.rpartition(".")
        value = getattr(cfg.retrain if section else cfg, name)
        why = in_bounds(key, value)
        if why is not None:
            raise fail(key, why)
    for key in ("db", "model", "model_store", "cache", "watch", "retrain.schedule",
                "web_host", "web_token"):
        section, _, name = key.rpartition(".")
        value = getattr(cfg.retrain if section else cfg, name)
        if any("\x00" in v for v in (value if isinstance(value, tuple) else (value,))):
            raise fail(key, "holds a NUL character (\\0); no path or name can")
    if cfg.write_genres not in WRITE_GENRES:
        raise fail("write_genres", f"one of {', '.join(WRITE_GENRES)}, not "
                   f"{cfg.write_genres!r}")
    why = separator_problem(cfg.genre_separator)
    if why is not None:
        raise fail("genre_separator", why)
    if cfg.log_level.upper() not in _LOG_LEVELS:
        raise fail("log_level", f"one of {', '.join(_LOG_LEVELS)}")
    if len(cfg.retrain.schedule.split()) != 5:
        raise fail("retrain.schedule", "a cron line of 5 fields, e.g. '0 3 * * *'")
    if "://" in cfg.db:
        why = url_problem(cfg.db)
        if why is not None:
            raise fail("db", why)
    try:
        check_aliases(cfg.aliases)
    except GenreNameError as e:
        raise ConfigError(f"{_aliases_source(cfg)}: {e}") from e
    try:
        GenreTree.built_in(cfg.genre_tree)
    except GenreTreeError as e:
        where = f"{cfg.source}: " if cfg.source != "defaults" else ""
        raise ConfigError(f"{where}{e}") from e
    return replace(cfg, log_level=cfg.log_level.upper())


def _aliases_source(cfg: Config) -> str:
    return f"{cfg.source}: [aliases]" if cfg.source != "defaults" else "[aliases]"


def _apply(cfg: Config, values: Mapping[str, Any], origin: str, kind: str) -> Config:
    """Overlay ``values`` (top-level keys, a ``retrain`` table, an ``aliases`` table) read
    from ``origin`` (named in errors), recording ``kind`` (FILE, ENV, FLAG) as their origin."""
    top: dict[str, Any] = {}
    retrain: dict[str, Any] = {}
    aliases = dict(cfg.aliases)
    tree = dict(cfg.genre_tree)
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
                retrain[rkey] = coerce(f"retrain.{rkey}", rvalue, default,
                                        _named(f"retrain.{rkey}", origin, kind))
                origins[f"retrain.{rkey}"] = kind
        elif key == "aliases":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"{origin}: 'aliases' must be a table of name = \"Genre\"")
            aliases.update(value)
            origins.update({f"aliases.{fold(name)}": kind for name in value})
        elif key == "genre_tree":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"{origin}: 'genre_tree' must be a table of "
                                  "\"Sub-genre\" = \"Parent\"")
            tree.update(value)
        elif key == "paths":
            paths.update(path_table(origin, value))
        elif key in _TOP_KEYS:
            top[key] = coerce(key, value, getattr(cfg, key), _named(key, origin, kind))
            origins[key] = kind
        else:
            raise ConfigError(f"{origin}: unknown config key '{key}'")
    return replace(cfg, **top, retrain=replace(cfg.retrain, **retrain), aliases=aliases,
                   genre_tree=tree, paths=paths,
                   origins=origins)


def _named(key: str, origin: str, kind: str) -> str:
    if kind == ENV:
        return "GENRED_" + key.upper().replace(".", "_")
    if kind == FLAG:
        return "--" + key.split(".")[-1].replace("_", "-")
    return f"config key '{key}' in {origin}"


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
        cfg = _apply(cfg, read_toml(file), str(file), FILE)
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
