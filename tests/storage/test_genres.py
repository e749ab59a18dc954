"""Genre names: aliases, config overrides, unknown names accepted."""

from __future__ import annotations

import pytest

from storage.genres import normalise, tag_label


@pytest.mark.parametrize("name, expected", [
    ("hip hop", "Rap"), ("Hip-Hop", "Rap"), ("HIPHOP", "Rap"), ("rap", "Rap"),
    ("electronica", "Electronic"), ("Techno", "Electronic"), ("EDM", "Electronic"),
    ("drum & bass", "Electronic"), ("Drum  and  Bass", "Electronic"), ("house", "Electronic"),
    ("jazz", "Jazz"), ("Romantic Classical", "Classical"), ("r&b", "R&B"),
])
def test_aliases_fold_case_spacing_and_ampersands(name: str, expected: str) -> None:
    assert normalise(name) == expected


def test_unknown_genres_are_title_cased_and_keep_acronyms() -> None:
    assert normalise("sea shanty") == "Sea Shanty"
    assert normalise("UK garage") == "UK Garage"


def test_config_aliases_merge_over_the_built_in_map() -> None:
    assert normalise("nu jazz", {"Nu Jazz": "Jazz"}) == "Jazz"
    assert normalise("house", {"house": "House"}) == "House"
    assert normalise("techno", {"house": "House"}) == "Electronic"


def test_empty_names_are_refused() -> None:
    with pytest.raises(ValueError):
        normalise("  ")


def test_tag_values_give_one_label() -> None:
    assert tag_label(["Rock; Pop"]) == "Rock"
    assert tag_label(["Hip Hop/Rap"]) == "Rap"
    assert tag_label(["", "jazz"]) == "Jazz"
    assert tag_label([]) is None
