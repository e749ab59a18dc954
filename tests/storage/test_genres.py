"""Genre names: aliases, config overrides, unknown names accepted."""

from __future__ import annotations

import re

import pytest

from storage.genres import GenreNameError, check_aliases, check_name, normalise, tag_label


@pytest.mark.parametrize("name, expected", [
    ("hip hop", "Rap"), ("Hip-Hop", "Rap"), ("HIPHOP", "Rap"), ("rap", "Rap"),
    ("electronica", "Electronic"), ("EDM", "Electronic"), ("IDM", "Electronic"),
    # sub-genres keep their own name (storage.genretree puts them under their parent)
    ("Techno", "Techno"), ("drum & bass", "Drum & Bass"), ("Drum  and  Bass", "Drum & Bass"),
    ("dnb", "Drum & Bass"), ("house", "House"), ("punk rock", "Punk"),
    ("jazz", "Jazz"), ("Romantic Classical", "Romantic"), ("r&b", "R&B"),
])
def test_aliases_fold_case_spacing_and_ampersands(name: str, expected: str) -> None:
    assert normalise(name) == expected


def test_unknown_genres_are_title_cased_and_keep_acronyms() -> None:
    assert normalise("sea shanty") == "Sea Shanty"
    assert normalise("UK garage") == "UK Garage"


def test_config_aliases_merge_over_the_built_in_map() -> None:
    assert normalise("nu jazz", {"Nu Jazz": "Jazz"}) == "Jazz"
    assert normalise("house", {"house": "Electronic"}) == "Electronic"
    assert normalise("techno", {"house": "Electronic"}) == "Techno"


def test_empty_names_are_refused() -> None:
    with pytest.raises(ValueError):
        normalise("  ")


def test_tag_values_give_one_label() -> None:
    assert tag_label(["Rock; Pop"]) == "Rock"
    assert tag_label(["Hip Hop/Rap"]) == "Rap"
    assert tag_label(["", "jazz"]) == "Jazz"
    assert tag_label([]) is None


@pytest.mark.parametrize(("name", "why"), [
    ("", "no letter or digit"), ("   ", "no letter or digit"), ("_", "no letter or digit"),
    ("-/-", "no letter or digit"), ("Ro\x00ck", "U+0000"), ("Rock\nPop", "U+000A"),
    ("\x1b]0;title\x07Jazz", "U+001B"), ("Ro\u202eck", "U+202E"), ("Ro\u200bck", "U+200B"),
    ("J" * 65, "at most 64"),
])
def test_a_name_that_cannot_be_a_genre_is_refused_saying_why(name: str, why: str) -> None:
    with pytest.raises(GenreNameError, match=re.escape(why)):
        check_name(name)
    with pytest.raises(GenreNameError):
        normalise(name)


def test_a_genre_name_is_trimmed_and_its_spaces_collapsed() -> None:
    assert check_name("  Sea \n") == "Sea"
    assert check_name("Sea    Shanty") == "Sea Shanty"
    assert check_name("J" * 64) == "J" * 64
    assert check_name("Música Popular Brasileira") == "Música Popular Brasileira"
    assert normalise(" r&b ") == "R&B"


def test_a_tag_value_that_is_not_a_genre_name_is_not_a_label() -> None:
    assert tag_label(["Ro\x1b[2Jck"]) is None
    assert tag_label(["Ro\x1b[2Jck; Jazz"]) == "Jazz"  # the next genre of a multi-value tag
    assert tag_label(["Rock\x00Pop"]) == "Rock"  # ID3v2.4's separator, not a control char


def test_config_aliases_follow_the_same_rule() -> None:
    check_aliases({"nu jazz": "Jazz"})
    with pytest.raises(GenreNameError, match="alias 'x': genre"):
        check_aliases({"x": "Ja\x07zz"})
    with pytest.raises(GenreNameError, match="alias"):
        check_aliases({"\x1b": "Jazz"})
