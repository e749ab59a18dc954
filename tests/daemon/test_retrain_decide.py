"""The promotion rule itself (daemon.retrain_judge.decide), case by case, on the per-song
answers the job collects: what promotes, what does not, and that the run record gets the
figures each decision rested on. The job around it (training, evaluating, recording) is
tested on real models in test_retrain.py and test_retrain_rule.py."""

from __future__ import annotations

from daemon.retrain_judge import SHOWN_P, AnchorCheck, Scores, decide, judge_agreement

SKIPPED_ANCHORS = AnchorCheck("skipped", "anchor check skipped: no anchor tracks")


def scores(*songs: tuple[str, str, str]) -> Scores:
    """Scores from (true genre, old model's answer, new model's answer) per song."""
    return Scores({f"/m/{i}.mp3": song for i, song in enumerate(songs)})


def test_a_clear_gain_promotes_and_the_figures_say_why() -> None:
    # 8 songs only the new model gets right, none only the old one: p = 0.5^8
    verdict = decide(scores(*[("Jazz", "Rock", "Jazz")] * 8, ("Rock", "Rock", "Rock")),
                     "9 held-out songs", [], SKIPPED_ANCHORS)
    assert verdict.promote and verdict.reasons == []
    f = verdict.figures
    assert (f["n_songs"], f["old_correct"], f["new_correct"]) == (9, 1, 9)
    assert (f["only_new_right"], f["only_old_right"]) == (8, 0)
    assert f["p_gain"] == round(0.5 ** 8, 4) and f["judged_on"] == "9 held-out songs"
    assert f["threshold_p"] == SHOWN_P


def test_a_less_accurate_model_is_refused() -> None:
    verdict = decide(scores(("Jazz", "Jazz", "Rock"), ("Rock", "Rock", "Rock"),
                            ("Pop", "Pop", "Pop")), "3 held-out songs", [], SKIPPED_ANCHORS)
    assert not verdict.promote
    assert verdict.reasons == ["new model less accurate on 3 held-out songs (2/3 against 3/3)"]


def test_no_judged_song_is_no_promotion() -> None:
    verdict = decide(Scores(), "0 songs in 3-fold cross-validation", ["Polka"],
                     SKIPPED_ANCHORS)
    assert not verdict.promote and "no songs to judge" in verdict.reasons[0]


def test_a_tie_on_a_few_songs_shows_nothing_and_does_not_promote() -> None:
    # The case: a 3-song hold-out, both models right on 1 of them.
    verdict = decide(scores(("Jazz", "Jazz", "Jazz"), ("Rock", "Pop", "Pop"),
                            ("Pop", "Rock", "Jazz")), "3 held-out songs", [], SKIPPED_ANCHORS)
    assert not verdict.promote
    assert "cannot show the new model learned the labels" in verdict.reasons[0]
    assert verdict.figures["p_gain"] == 1.0 and verdict.figures["p_above_chance"] >= SHOWN_P


def test_a_tie_that_adds_a_genre_no_judged_song_checks_does_not_promote() -> None:
    # Both models are right on all 12 songs (far above always answering one genre), but
    # the new model also brings "Polka", and no judged song is Polka: nothing checked it.
    songs = [(g, g, g) for g in ("Jazz", "Rock", "Pop", "Blues") for _ in range(3)]
    verdict = decide(scores(*songs), "12 held-out songs", ["Polka"], SKIPPED_ANCHORS)
    assert not verdict.promote
    assert verdict.reasons == ["a tie on 12 held-out songs while the new model adds Polka, "
                               "which no judged song checks"]
    assert verdict.figures["unchecked_added_genres"] == ["Polka"]
    # A tie where judged songs are Polka (the old model cannot get them right; the new one
    # loses two Jazz songs instead): the hold-out checked the new genre.
    polka = [("Polka", "Jazz", "Polka")] * 2
    lost = [("Jazz", "Jazz", "Rock")] * 2
    checked = decide(scores(*songs[3:], *lost, *polka), "13 held-out songs", ["Polka"],
                     SKIPPED_ANCHORS)
    assert (checked.figures["old_correct"], checked.figures["new_correct"]) == (11, 11)
    assert checked.promote, checked.reasons
    # And a tie adding no genre, well above chance, keeps the old rule: promoted.
    assert decide(scores(*songs), "12 held-out songs", [], SKIPPED_ANCHORS).promote


def test_a_model_that_forgets_the_anchors_is_refused_whatever_its_accuracy() -> None:
    forgot = judge_agreement({"Chirp": [2, 10], "Noise": [10, 10]})
    assert forgot.status == "failed"
    verdict = decide(scores(*[("Jazz", "Rock", "Jazz")] * 8), "8 held-out songs", [], forgot)
    assert not verdict.promote
    assert verdict.reasons == [f"new model {forgot.reason}"]
