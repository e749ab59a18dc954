"""The rules a single config value must meet, whatever its source (file, environment,
flag): types (``coerce``), numeric bounds (``BOUNDS``), the genre separator, catalogue URLs
and the ``[paths]`` table. ``daemon.config`` applies them; each failure is a ConfigError
whose message names the setting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any


class ConfigError(Exception):
    """A config value is missing, malformed or of the wrong type; the message names the key."""


def separator_problem(separator: str) -> str | None:
    """Why ``separator`` cannot join genres in a tag, or None. "/" is refused: players
    split it inside names ("AC/DC", "Hip Hop/Rap"), so "Rock/Blues" is no list."""
    if not separator.strip():
        return f"must hold a visible character, not {separator!r}"
    if "/" in separator:
        return "must not hold '/': players read it inside genre names; use \"; \""
    if not separator.isprintable() or len(separator) > 8:
        return f"must be up to 8 printable characters, not {separator!r}"
    return None


# Numeric settings: (lowest, highest, unit) — finite, and sensible: a rescan every 0.36 ms
# spins a core, 10**20 clips per track allocates gigabytes before anything fails.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "settle_seconds": (0, 86_400, "seconds"),
    "rescan_hours": (0.1, 8_760, "hours"),
    "workers": (0, 256, "processes; 0 = all cores"),
    "clips_per_track": (1, 32, "clips"),
    "tag_threshold": (0, 1, "a confidence"),
    "max_genres": (1, 16, "genres per track; 1 = the top genre only"),
    "secondary_threshold": (0, 1, "a probability"),
    "album_margin": (0, 1, "a difference of probabilities"),
    "busy_timeout_seconds": (0.01, 3600, "seconds"),
    "lease_seconds": (2, 86_400, "seconds a claim outlives its worker's last heartbeat"),
    "retrain.min_new_labels": (0, 1_000_000, "labels"),
    "retrain.epochs": (1, 100_000, "epochs; early stopping ends most runs far sooner"),
    "web_port": (0, 65_535, "a TCP port; 0 = any free one"),
    "retrain.min_songs_per_genre": (1, 1_000_000, "labelled songs a new genre needs"),
    "retrain.min_holdout_songs": (1, 1_000_000, "held-out songs; fewer: cross-validation"),
    "retrain.threads": (0, 1024, "torch threads of the retrain; 0 = all cores but one"),
    "retrain.min_anchor_agreement": (0, 1, "a share of held-out anchor tracks"),
    "retrain.min_genre_agreement": (0, 1, "a share of one genre's held-out anchor tracks"),
}
MAX_CONFIG_BYTES = 4 << 20


def in_bounds(key: str, value: float) -> str | None:
    """Why ``value`` is not allowed for numeric setting ``key``, or None when it is."""
    low, high, unit = BOUNDS[key]
    if not math.isfinite(value) or not low <= value <= high:
        return f"must be a number from {low:g} to {high:g} ({unit}), not {value!r}"
    return None


def coerce(key: str, value: Any, default: Any, name: str | None = None) -> Any:
    """Turn a TOML/env/flag value into the type of the field's default, or raise a
    ConfigError naming the setting as ``name`` (default: "config key '<key>'")."""
    name = name or f"config key '{key}'"
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
            if isinstance(value, str):
                value = value.strip()
                if not value.lstrip("+-").isdigit() or len(value) > 20:
                    raise ValueError("expected a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            try:
                return float(value)
            except ValueError:
                raise ValueError("expected a number") from None
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
    except (TypeError, ValueError, OverflowError) as e:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
        raise ConfigError(f"{name}: {e} (got {shown!r})") from e
    raise ConfigError(f"{name}: unsupported value {value!r}")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an SQLAlchemy URL genred could use (its dialect unknown), or None.
    The database driver itself is checked when the catalogue opens."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
        dialect.create_connect_args(dialect(), parsed)  # e.g. "sqlite://host" is refused
    except (ArgumentError, ValueError) as e:
        return f"not a usable catalogue URL ({url!r}): {str(e).splitlines()[0]}"
    except ImportError as e:
        return f"catalogue URL {url!r} needs a driver that is not installed ({e})"
    return None


def path_table(origin: str, value: Any) -> dict[str, str]:
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
