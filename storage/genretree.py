"""Sub-genres: a genre tree (sub-genre -> parent), built in for common genres and extended
by the config's ``[genre_tree]``, and how an answer is read through it.

The tree changes three things:

- **Probabilities**: a parent's probability is its own plus its sub-genres'
  (:meth:`GenreTree.rolled_up`), so it is at least the sum of its children's. A model
  that knows House and Electronic gives "Electronic 0.7" when it says Electronic 0.3 and
  House 0.4; a parent the model has no output for still gets its children's sum.
- **The answer** (:meth:`GenreTree.choose`): the top-level genre with the highest rolled-up
  probability, then down the tree while the likeliest sub-genre holds more than half of
  its parent's probability (more likely that sub-genre than any other kind of the parent).
  Without sub-genres among the model's outputs this is the most probable genre, as before.
- **Queries and tags**: a genre stands for itself and everything under it
  (:meth:`GenreTree.under`: ``query --genre Electronic`` finds House), and
  ``write_parent_genres`` writes each genre after its parents (:meth:`GenreTree.with_parents`:
  ``Electronic; House``).

Names compare folded (``storage.genres.fold``), so "drum & bass" is "Drum & Bass".

Examples::

    >>> tree = GenreTree.built_in()
    >>> tree.parent("house"), tree.ancestors("Deep House")
    ('Electronic', ['House', 'Electronic'])
    >>> tree.rolled_up({"Electronic": 0.3, "House": 0.4, "Rock": 0.3})["Electronic"]
    0.7
    >>> tree.with_parents(["Deep House", "Rock"])
    ['Electronic', 'House', 'Deep House', 'Rock']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from storage.genres import check_name, fold, normalise, unique

# Sub-genre -> parent, canonical spellings. The built-in aliases (storage.genres.ALIASES)
# spell each of these, so tags and corrections saying "drum and bass" land here. Genres
# the bundled starter model learned side by side (Metal and Rock, Disco and Pop) are not
# nested: the tree only holds what is uncontroversially a kind of its parent.
BUILT_IN: dict[str, str] = {
    "House": "Electronic", "Deep House": "House", "Techno": "Electronic",
    "Trance": "Electronic", "Drum & Bass": "Electronic", "Jungle": "Drum & Bass",
    "Dubstep": "Electronic", "Ambient": "Electronic",
    "Hard Rock": "Rock", "Punk": "Rock", "Alternative Rock": "Rock", "Indie Rock": "Rock",
    "Classic Rock": "Rock", "Grunge": "Rock", "Progressive Rock": "Rock",
    "Psychedelic Rock": "Rock",
    "Death Metal": "Metal", "Black Metal": "Metal", "Thrash Metal": "Metal",
    "Metalcore": "Metal",
    "Bebop": "Jazz", "Swing": "Jazz", "Cool Jazz": "Jazz", "Free Jazz": "Jazz",
    "Smooth Jazz": "Jazz",
    "Baroque": "Classical", "Romantic": "Classical", "Opera": "Classical",
    "Chamber Music": "Classical",
    "Trap": "Rap", "Gangsta Rap": "Rap",
    "Bluegrass": "Country", "Delta Blues": "Blues", "K-Pop": "Pop",
    "Ska": "Reggae", "Dub": "Reggae", "Dancehall": "Reggae",
}
MAX_DEPTH = 8  # levels below a top-level genre; a deeper (or circular) tree is refused


class GenreTreeError(ValueError):
    """The config's ``[genre_tree]`` is not a tree: a bad name, a genre its own parent, a
    cycle, or more than MAX_DEPTH levels. The message names the entry."""


@dataclass(frozen=True)
class GenreTree:
    """``parents``: folded sub-genre -> parent (canonical spelling); ``names``: folded ->
    canonical spelling of every genre in the tree."""

    parents: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def built_in(cls, extra: Mapping[str, str] | None = None) -> GenreTree:
        """The built-in tree with ``extra`` (the config's ``[genre_tree]``: sub-genre =
        parent) over it: an entry for a built-in sub-genre moves it. Raises
        GenreTreeError for an entry that breaks the tree."""
        parents: dict[str, str] = {}
        names: dict[str, str] = {}
        for child, parent in [*BUILT_IN.items(), *(extra or {}).items()]:
            try:
                child, parent = check_name(child, "sub-genre"), check_name(parent,
                                                                           f"{child!a}: parent")
            except ValueError as e:
                raise GenreTreeError(f"[genre_tree]: {e}") from e
            if fold(child) == fold(parent):
                raise GenreTreeError(f"[genre_tree]: {child!a} cannot be its own parent")
            names.setdefault(fold(parent), parent)  # the first spelling (built-in) wins
            names.setdefault(fold(child), child)
            parents[fold(child)] = names[fold(parent)]
        tree = cls(parents, names)
        for child in parents:
            tree._check_depth(child)
        return tree

    def _check_depth(self, name: str) -> None:
        seen = [name]
        key = name
        while key in self.parents:
            key = fold(self.parents[key])
            if key in seen or len(seen) > MAX_DEPTH:
                chain = " -> ".join(self.names.get(k, k) for k in [*seen, key])
                raise GenreTreeError(f"[genre_tree]: {chain} is a cycle or deeper than "
                                     f"{MAX_DEPTH} levels")
            seen.append(key)

    def spelling(self, name: str) -> str:
        """The tree's spelling of ``name`` ("drum and bass" -> "Drum & Bass"), else ``name``."""
        return self.names.get(fold(name), name)

    def parent(self, name: str) -> str | None:
        return self.parents.get(fold(name))

    def ancestors(self, name: str) -> list[str]:
        """Parent, grandparent, ... up to a top-level genre (nearest first)."""
        out: list[str] = []
        key = fold(name)
        while key in self.parents and len(out) <= MAX_DEPTH:
            out.append(self.parents[key])
            key = fold(self.parents[key])
        return out

    def under(self, name: str) -> list[str]:
        """``name`` and every genre below it, ``name`` first (query filters)."""
        key = fold(name)
        below = [self.names[c] for c in self.parents
                 if any(fold(a) == key for a in self.ancestors(c))]
        return [name, *sorted(below)]

    def query_names(self, typed: str, aliases: Mapping[str, str] | None = None
                    ) -> tuple[str, ...]:
        """What a genre filter (``query --genre``) matches: the name as typed, its
        canonical spelling, and every genre under it."""
        canonical = normalise(typed, aliases)
        return tuple(unique([typed, canonical, *self.under(canonical)[1:]]))

    def related(self, a: str, b: str) -> bool:
        """True when ``a`` and ``b`` are the same genre or one is under the other."""
        fa, fb = fold(a), fold(b)
        return fa == fb or fb in map(fold, self.ancestors(a)) or fa in map(fold,
                                                                          self.ancestors(b))

    def rolled_up(self, probabilities: Mapping[str, float]) -> dict[str, float]:
        """``probabilities`` with each parent's own probability plus its sub-genres' (all
        levels); parents the model has no output for are added. Names keep the model's
        spelling; an added parent has the tree's."""
        out = {name: float(p) for name, p in probabilities.items()}
        spelt = {fold(name): name for name in out}
        for name, p in probabilities.items():
            for parent in self.ancestors(name):
                key = spelt.setdefault(fold(parent), parent)
                out[key] = out.get(key, 0.0) + float(p)
        return out

    def choose(self, rolled: Mapping[str, float]) -> str:
        """The answer's main genre among rolled-up probabilities: the likeliest top-level
        genre, then down while the likeliest sub-genre holds more than half its parent's
        probability."""
        present = {fold(g) for g in rolled}

        def above(name: str) -> str | None:  # the parent among the answer's genres
            parent = self.parent(name)
            return fold(parent) if parent is not None and fold(parent) in present else None

        def children(name: str) -> list[str]:
            return [g for g in rolled if above(g) == fold(name)]

        best = max((g for g in rolled if above(g) is None), key=lambda g: (rolled[g], g))
        while True:
            below = children(best)
            if not below:
                return best
            child = max(below, key=lambda g: (rolled[g], g))
            if rolled[child] <= rolled[best] / 2:
                return best
            best = child

    def with_parents(self, genres: Iterable[str]) -> list[str]:
        """Each genre after its parents (top-level first), each once: what tags get with
        ``write_parent_genres = true``."""
        out: list[str] = []
        seen: set[str] = set()
        for genre in genres:
            for name in [*reversed(self.ancestors(genre)), genre]:
                if fold(name) not in seen:
                    seen.add(fold(name))
                    out.append(name)
        return out

    def most_specific(self, genres: Iterable[str]) -> list[str]:
        """``genres`` without those that are parents of another one in the list ("Electronic;
        House" is House), order kept."""
        names = list(genres)
        return [g for g in names
                if not any(fold(g) in map(fold, self.ancestors(o)) for o in names)]
