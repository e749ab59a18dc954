"""Genre-name normalisation: one spelling per genre, whatever users and tags call it.

Labels reach the catalogue from three places — user corrections, genre tags already in the
files, and model labels — and each spells genres its own way ("hip-hop", "Hip Hop", "RAP").
``normalise`` folds them through a case-insensitive alias map so that a correction, a tag
and a prediction for the same genre compare equal. ``normalise`` title-cases a name not in
the map (used where any name is a filter, e.g. ``query --genre``). Labels go through
``resolve`` instead: a known genre (the model's, or one a label already uses) matched
case-insensitively in its first spelling, then the alias map, else None — the command then
refuses the name with ``suggestions`` or, when the user asked for a new genre, keeps it as
``spelled`` ("IDM", "SynSwing"). ``is_placeholder`` tells tag values that are no genre.

Examples::

    >>> normalise("hip hop")
    'Rap'
    >>> normalise("  drum  and  bass ")
    'Drum & Bass'
    >>> normalise("nu jazz", {"nu jazz": "Jazz"})
    'Jazz'
    >>> normalise("sea shanty")
    'Sea Shanty'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.genretree import GenreTree

# Keys are folded (lower case, single spaces, "&" -> "and"); values are canonical names.
ALIASES: dict[str, str] = {
    # Rap / hip hop
    "hip hop": "Rap", "hip-hop": "Rap", "hiphop": "Rap", "rap": "Rap", "trap": "Trap",
    "gangsta rap": "Gangsta Rap", "hip hop/rap": "Rap", "rap/hip hop": "Rap",
    "rap and hip-hop": "Rap",
    # Electronic (sub-genres: storage.genretree)
    "electronic": "Electronic", "electronica": "Electronic", "electro": "Electronic",
    "techno": "Techno", "edm": "Electronic", "house": "House", "deep house": "Deep House",
    "trance": "Trance", "dubstep": "Dubstep", "drum and bass": "Drum & Bass",
    "drum n bass": "Drum & Bass", "drum'n'bass": "Drum & Bass", "drum-and-bass": "Drum & Bass",
    "dnb": "Drum & Bass", "d and b": "Drum & Bass", "jungle": "Jungle", "idm": "Electronic",
    "ambient": "Ambient", "dance": "Electronic", "electronic dance music": "Electronic",
    "synthpop": "Electronic",
    # Rock
    "rock": "Rock", "rock and roll": "Rock", "rock & roll": "Rock", "rock'n'roll": "Rock",
    "classic rock": "Classic Rock", "alternative rock": "Alternative Rock",
    "alt rock": "Alternative Rock", "indie rock": "Indie Rock", "hard rock": "Hard Rock",
    "punk": "Punk", "punk rock": "Punk", "grunge": "Grunge",
    "progressive rock": "Progressive Rock", "prog rock": "Progressive Rock",
    "psychedelic rock": "Psychedelic Rock",
    # Metal
    "metal": "Metal", "heavy metal": "Metal", "death metal": "Death Metal",
    "black metal": "Black Metal", "thrash metal": "Thrash Metal", "metalcore": "Metalcore",
    # Classical
    "classical": "Classical", "classic": "Classical", "romantic classical": "Romantic",
    "romantic": "Romantic", "baroque": "Baroque", "orchestral": "Classical", "opera": "Opera",
    "chamber music": "Chamber Music", "symphony": "Classical",
    # Jazz, Blues, Country, Disco, Pop, Reggae
    "jazz": "Jazz", "bebop": "Bebop", "swing": "Swing", "smooth jazz": "Smooth Jazz",
    "cool jazz": "Cool Jazz", "free jazz": "Free Jazz",
    "ragtime": "Jazz", "blues": "Blues", "rhythm and blues": "Blues",
    "delta blues": "Delta Blues",
    "country": "Country", "country and western": "Country", "bluegrass": "Bluegrass",
    "disco": "Disco", "pop": "Pop", "pop music": "Pop", "k-pop": "K-Pop", "kpop": "K-Pop",
    "reggae": "Reggae", "ska": "Ska", "dub": "Dub", "dancehall": "Dancehall",
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


def split_values(value: str) -> list[str]:
    """The genres of a multi-genre tag value ("Rock; Pop", "Rock/Pop"), trimmed."""
    return [p.strip() for p in _SEPARATORS.split(value) if p.strip()]


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


def merge_probabilities(genre: str, confidence: float, probabilities: dict[str, float],
                        renames: Mapping[str, str]) -> tuple[str, float, dict[str, float]]:
    """A prediction shown under the renamed genres: probabilities of names renamed to the
    same genre are added up; the genre is the most probable one after that, and the
    confidence its probability. Without renames, the prediction as it was."""
    if not renames:
        return genre, confidence, probabilities
    merged: dict[str, float] = {}
    for name, p in probabilities.items():
        shown = renames.get(name, name)
        merged[shown] = merged.get(shown, 0.0) + float(p)
    if not merged:
        return renames.get(genre, genre), confidence, merged
    top = max(merged, key=lambda g: merged[g])
    return top, merged[top], merged


# Genre tag values that are not genres (folded); `import-tags` skips them, and so do the
# config's ``ignore_genres``.
PLACEHOLDERS = frozenset(fold(x) for x in (
    "other", "others", "unknown", "unknown genre", "genre", "the genre", "genres", "misc",
    "miscellaneous", "none", "no genre", "n/a", "na", "undefined", "unclassified",
    "untitled", "various", "default", "-", "--", "?", "??", "???", "(none)", "blank",
    "general", "tbd", "to do", "todo", "not set",
))
_ID3_CODE = re.compile(r"^\(?(\d{1,3})\)?$")


def id3_code_genre(value: str) -> str | None:
    """The genre an ID3v1 numeric code ("17", "(17)") stands for; "" for a number that
    maps to no genre (e.g. 255); None when ``value`` is not such a code."""
    match = _ID3_CODE.match(value.strip())
    if match is None:
        return None
    from mutagen._constants import GENRES

    code = int(match.group(1))
    return GENRES[code] if code < len(GENRES) else ""


def is_placeholder(value: str, ignore: Iterable[str] = ()) -> bool:
    """True for a tag value that is no genre: empty, a numeric code mapping to nothing, a
    known placeholder ("Other", "Unknown", "Genre", "the genre", "misc"), or one of
    ``ignore`` (the config's ``ignore_genres``), compared folded."""
    key = fold(value)
    if not key or key in PLACEHOLDERS or key in {fold(x) for x in ignore}:
        return True
    return id3_code_genre(value) == ""


def spelled(name: str) -> str:
    """A new genre as the user wrote it: trimmed, inner runs of spaces made one, the case
    and punctuation kept ("IDM", "SynSwing", "Drum & Bass"). Raises GenreNameError for a
    name :func:`check_name` refuses."""
    return check_name(name)


def resolve(name: str, known: Iterable[str], extra: Mapping[str, str] | None = None,
            aliases: bool = True) -> str | None:
    """The genre ``name`` means: a known genre matched case-insensitively (its first
    spelling), else (with ``aliases``) an alias's genre, else None (an unknown genre).
    Known genres win over the built-in aliases: a genre the user created ("IDM") is not
    folded into another."""
    key = fold(name)
    if not key:
        raise ValueError("empty genre name")
    known = list(known)
    for genre in known:
        if fold(genre) == key:
            return genre
    if not aliases:
        return None
    table = alias_map(extra) if extra else _FOLDED
    if key in table:
        target = table[key]
        for genre in known:  # the alias's genre in the spelling the catalogue uses
            if fold(genre) == fold(target):
                return genre
        return target
    return None


def suggestions(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known genres closest to ``name`` (for "did you mean Jazz?"), best first."""
    import difflib

    names = {fold(g): g for g in known}
    close = difflib.get_close_matches(fold(name), list(names), n=n, cutoff=0.5)
    aliases = [a for a in difflib.get_close_matches(fold(name), list(_FOLDED), n=n, cutoff=0.75)]
    out = [names[k] for k in close]
    for alias in aliases:
        target = _FOLDED[alias]
        if target not in out:
            out.append(target)
    return out[:n]


# --- several genres per track ----------------------------------------------------------

@dataclass(frozen=True)
class MultiGenre:
    """How many genres an answer holds (config ``max_genres``, ``secondary_threshold``):
    the top genre, then every other genre whose probability reaches ``threshold``, most
    probable first, at most ``max_genres`` in all. ``max_genres = 1`` is one genre."""

    max_genres: int = 1
    threshold: float = 0.35
    tree: GenreTree | None = None  # sub-genres (storage.genretree); None: every genre flat

    def answer(self, genre: str, confidence: float, probabilities: Mapping[str, float]
               ) -> tuple[str, float, dict[str, float], list[str]]:
        """What is stored for a model's answer: (main genre, its confidence, the
        probabilities, the genres). Through the tree, probabilities are rolled up (a parent
        holds its sub-genres'), the main genre is chosen down the tree
        (``GenreTree.choose``), and the other genres are those reaching ``threshold`` that
        are neither above nor below it, most specific and most probable first. Where no
        output is a sub-genre of another (or there is no tree), the answer is the model's,
        unchanged."""
        probs = {g: float(p) for g, p in probabilities.items()}
        tree = self.tree
        if tree is None or not any(tree.parent(g) is not None for g in probs):
            return genre, confidence, probs, self.pick(genre, probs)
        rolled = tree.rolled_up(probs)
        main = tree.choose(rolled)
        others = tree.most_specific(g for g in rolled
                                    if rolled[g] >= self.threshold and not tree.related(g, main))
        others.sort(key=lambda g: (-rolled[g], g))
        return main, rolled[main], rolled, [main, *others][:max(1, self.max_genres)]

    def pick(self, top: str, probabilities: Mapping[str, float]) -> list[str]:
        """The answer's genres, ``top`` first.

        >>> MultiGenre(2, 0.35).pick("Rock", {"Rock": 0.5, "Blues": 0.4, "Pop": 0.1})
        ['Rock', 'Blues']
        """
        others = sorted((g for g, p in probabilities.items()
                         if g != top and float(p) >= self.threshold),
                        key=lambda g: (-float(probabilities[g]), g))
        return [top, *others][:max(1, self.max_genres)]


LIST_SEPARATOR = ";"  # between the genres of one correction: "Rock; Blues"


def split_list(text: str) -> list[str]:
    """The names of a genre list typed by a user ("Rock; Blues"), in order, empty parts
    dropped. Only ";" separates: "/" and "," occur inside genre names ("Hip Hop/Rap")."""
    return [part.strip() for part in text.split(LIST_SEPARATOR) if part.strip()]


def genres_or(genre: str | None, genres: Sequence[str] | None) -> list[str]:
    """A stored answer's genres: the ``genres`` column, else (rows written before several
    genres per track, or no answer) ``[genre]`` / ``[]``."""
    if genres:
        return [str(g) for g in genres]
    return [genre] if genre is not None else []


def unique(names: Iterable[str]) -> list[str]:
    """``names`` in order, each genre once (compared folded)."""
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        if fold(name) not in seen:
            seen.add(fold(name))
            out.append(name)
    return out
