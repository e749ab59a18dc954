"""Genre-name normalisation: one spelling per genre, whatever users and tags call it.

Labels reach the catalogue from three places — user corrections, genre tags already in the
files, and model labels — and each spells genres its own way ("hip-hop", "Hip Hop", "RAP").
``normalise`` folds them through a case-insensitive alias map so that a correction, a tag
and a prediction for the same genre compare equal. Names not in the map are accepted (a
genre the model does not know yet joins its label set at the next retrain) and title-cased,
keeping short all-caps words such as "EDM"-like acronyms the user typed as they are.

Examples::

    >>> normalise("hip hop")
    'Rap'
    >>> normalise("  drum  and  bass ")
    'Electronic'
    >>> normalise("nu jazz", {"nu jazz": "Jazz"})
    'Jazz'
    >>> normalise("sea shanty")
    'Sea Shanty'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Keys are folded (lower case, single spaces, "&" -> "and"); values are canonical names.
ALIASES: dict[str, str] = {
    # Rap / hip hop
    "hip hop": "Rap", "hip-hop": "Rap", "hiphop": "Rap", "rap": "Rap", "trap": "Rap",
    "gangsta rap": "Rap", "hip hop/rap": "Rap", "rap/hip hop": "Rap", "rap and hip-hop": "Rap",
    # Electronic
    "electronic": "Electronic", "electronica": "Electronic", "electro": "Electronic",
    "techno": "Electronic", "edm": "Electronic", "house": "Electronic",
    "deep house": "Electronic", "trance": "Electronic", "dubstep": "Electronic",
    "drum and bass": "Electronic", "drum n bass": "Electronic", "drum'n'bass": "Electronic",
    "drum-and-bass": "Electronic", "dnb": "Electronic", "d and b": "Electronic",
    "jungle": "Electronic", "idm": "Electronic", "ambient": "Electronic",
    "dance": "Electronic", "electronic dance music": "Electronic", "synthpop": "Electronic",
    # Rock
    "rock": "Rock", "rock and roll": "Rock", "rock & roll": "Rock", "rock'n'roll": "Rock",
    "classic rock": "Rock", "alternative rock": "Rock", "alt rock": "Rock",
    "indie rock": "Rock", "hard rock": "Rock", "punk": "Rock", "punk rock": "Rock",
    "grunge": "Rock",
    # Metal
    "metal": "Metal", "heavy metal": "Metal", "death metal": "Metal",
    "black metal": "Metal", "thrash metal": "Metal", "metalcore": "Metal",
    # Classical
    "classical": "Classical", "classic": "Classical", "romantic classical": "Classical",
    "baroque": "Classical", "orchestral": "Classical", "opera": "Classical",
    "chamber music": "Classical", "symphony": "Classical",
    # Jazz, Blues, Country, Disco, Pop, Reggae
    "jazz": "Jazz", "bebop": "Jazz", "swing": "Jazz", "smooth jazz": "Jazz",
    "ragtime": "Jazz", "blues": "Blues", "rhythm and blues": "Blues", "delta blues": "Blues",
    "country": "Country", "country and western": "Country", "bluegrass": "Country",
    "disco": "Disco", "pop": "Pop", "pop music": "Pop", "k-pop": "Pop", "kpop": "Pop",
    "reggae": "Reggae", "ska": "Reggae", "dub": "Reggae", "dancehall": "Reggae",
    "r&b": "R&B", "rnb": "R&B", "r and b": "R&B", "soul": "Soul", "funk": "Funk",
    "folk": "Folk", "singer-songwriter": "Folk", "world": "World", "latin": "Latin",
}

MAX_NAME_LENGTH = 64  # characters; the longest built-in alias key has 22

_SPACES = re.compile(r"\s+")
_SEPARATORS = re.compile(r"\s*[;/,|\x00]\s*")


class GenreNameError(ValueError):
    """A genre name (or alias) is not one: empty, control characters, too long. The
    message names the value, escaped, and the rule it broke."""


def check_name(name: str, what: str = "genre name") -> str:
    """``name`` trimmed (leading and trailing white space, newlines included, dropped), with
    runs of spaces made one, when it may be a genre name or an alias: printable text only
    (no control, format or line-separator characters — they would reach tags and
    terminals raw), at least one letter or digit, at most MAX_NAME_LENGTH characters.
    Raises GenreNameError saying which rule failed; ``what`` names the value in the
    message ("alias", "genre in line 3"). Every place a genre enters genred
    (corrections, CSV rows, tags taken as labels, config aliases) calls this
    before :func:`normalise`; normalise calls it too."""
    if not isinstance(name, str):
        raise GenreNameError(f"{what} must be text, not {type(name).__name__}")
    shown = ascii(name) if len(name) <= 80 else ascii(name[:80]) + "..."
    trimmed = name.strip()
    bad = sorted({c for c in trimmed if not c.isprintable()})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise GenreNameError(f"{what} {shown} holds control or invisible characters "
                             f"({codes}); use printable text only")
    trimmed = _SPACES.sub(" ", trimmed)
    if not any(c.isalnum() for c in trimmed):
        raise GenreNameError(f"{what} {shown} is empty or has no letter or digit")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise GenreNameError(f"{what} {shown} is {len(trimmed)} characters long; at most "
                             f"{MAX_NAME_LENGTH}")
    return trimmed


def fold(name: str) -> str:
    """The lookup key for ``name``: lower case, trimmed, "&" as "and", underscores as
    spaces, runs of spaces collapsed."""
    return _SPACES.sub(" ", name.replace("_", " ").replace("&", " and ").strip().lower())


_FOLDED = {fold(key): value for key, value in ALIASES.items()}


def _title(name: str) -> str:
    """Title-case word by word, but keep words the user wrote in capitals (e.g. "UK")."""
    words = _SPACES.sub(" ", name.strip()).split(" ")
    return " ".join(w if (w.isupper() and len(w) > 1) else w[:1].upper() + w[1:].lower()
                    for w in words)


def alias_map(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The built-in aliases with ``extra`` (the config's ``[aliases]``, checked by
    :func:`check_aliases` when the config is read) merged over them."""
    merged = {fold(key): value for key, value in ALIASES.items()}
    for key, value in (extra or {}).items():
        merged[fold(key)] = _SPACES.sub(" ", value).strip()
    return merged


def check_aliases(extra: Mapping[str, str]) -> None:
    """Raise GenreNameError for the first alias whose name or genre is not a genre name."""
    for key, value in extra.items():
        check_name(key, "alias")
        check_name(value, f"alias {key!a}: genre")


def normalise(name: str, extra: Mapping[str, str] | None = None) -> str:
    """The canonical spelling of genre ``name``. Raises GenreNameError (a ValueError) for a
    name :func:`check_name` refuses."""
    name = check_name(name)
    key = fold(name)
    if not key:
        raise GenreNameError(f"genre name {name!a} is empty")
    aliases = alias_map(extra) if extra else _FOLDED
    if key in aliases:
        return aliases[key]
    return _title(name)


def tag_label(values: list[str], extra: Mapping[str, str] | None = None) -> str | None:
    """The label a file's genre tag values stand for, or None when they are empty.

    The first non-empty value counts. A value that is itself an alias ("Hip Hop/Rap") maps
    whole; otherwise a multi-genre value ("Rock; Pop", "Rock/Pop" — the ID3v2.3 convention)
    gives its first genre. A genre that is not a genre name (control characters, too long,
    see :func:`check_name`) is skipped: it never becomes a label."""
    aliases = alias_map(extra)
    for value in values:
        if not value.strip():
            continue
        if fold(value) in aliases:
            return aliases[fold(value)]
        for part in _SEPARATORS.split(value):
            try:
                return normalise(part, extra)
            except GenreNameError:
                continue
    return None
