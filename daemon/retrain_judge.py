"""Judging a candidate model against the one it would replace.

The promotion rule (:func:`decide`): on songs neither model trained on — the held-out
labels, or when those are too few the cross-validation folds — the candidate

- must not be less accurate than the old model;
- must show, by a margin those songs can show, that it learned the labels: either it is
  better than the old model by a paired sign test (songs only it gets right against songs
  only the old one gets right, one-sided p < ``SHOWN_P``), or it is at least as accurate
  and beats always answering the judged songs' most common genre by a binomial test at the
  same level. A model trained on random labels does neither;
- on a tie, must not add genres the judged songs do not contain (nothing checked them);
- must agree with the old model on held-out anchors (:func:`judge_agreement`), whenever
  there are anchors.

Every figure the decision rests on is returned in ``Verdict.figures`` for the run record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.retrain_data import ANCHOR_CONFIDENCE, Labelled

# Promotion also needs the new model to give the old one's answer on held-out anchors:
# overall, and in each genre with enough of them. Candidates for [retrain] config keys.
MIN_ANCHOR_AGREEMENT = 0.9
MIN_GENRE_AGREEMENT = 0.7
MIN_ANCHORS_TO_JUDGE = 5  # fewer held-out anchors (overall / in a genre): not judged
CHANGED_LISTED = 20  # anchors whose answer changed, listed in the run's metrics
SHOWN_P = 0.05  # a gain (or a lead over chance) is shown when this unlikely by luck


@dataclass
class AnchorCheck:
    """How often the new model gave the old model's answer on held-out anchors.
    ``status``: passed | failed | skipped; ``reason``: one line for the run record;
    ``per_genre``: genre -> [agreed, anchors]; ``unsure``: held-out anchors left out
    because the old model, asked again, was no longer sure of the genre they were chosen for;
    ``changed``: {path, old, new} of some anchors whose answer changed."""

    status: str
    reason: str
    per_genre: dict[str, list[int]] = field(default_factory=dict)
    unsure: int = 0
    changed: list[dict[str, str]] = field(default_factory=list)
    needed: tuple[float, float] = (MIN_ANCHOR_AGREEMENT, MIN_GENRE_AGREEMENT)  # overall, genre

    @property
    def anchors(self) -> int:
        return sum(n for _, n in self.per_genre.values())

    @property
    def agreed(self) -> int:
        return sum(k for k, _ in self.per_genre.values())

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.anchors if self.anchors else None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "reason": self.reason, "agreement": self.agreement,
            "anchors": self.anchors, "agreed": self.agreed, "unsure": self.unsure,
            "per_genre": {g: {"anchors": n, "agreed": k, "agreement": k / n}
                          for g, (k, n) in sorted(self.per_genre.items()) if n},
            "thresholds": {"overall": self.needed[0], "genre": self.needed[1],
                           "min_anchors": MIN_ANCHORS_TO_JUDGE},
            "changed": self.changed,
        }


def judge_agreement(per_genre: dict[str, list[int]], unsure: int = 0,
                    overall: float = MIN_ANCHOR_AGREEMENT,
                    genre: float = MIN_GENRE_AGREEMENT) -> AnchorCheck:
    """Pass or fail a candidate on its agreement with the old model on held-out anchors
    (genre -> [agreed, anchors]). Fewer than MIN_ANCHORS_TO_JUDGE anchors in all: skipped
    (a handful of tracks would let one legitimately changed answer block every night);
    else failed when the overall agreement is below ``overall`` (config
    ``retrain.min_anchor_agreement``; and more than one answer changed: with few anchors,
    one changed answer is no evidence of forgetting) or a genre with at least
    MIN_ANCHORS_TO_JUDGE anchors is below ``genre`` (``retrain.min_genre_agreement``)."""
    check = AnchorCheck("passed", "", {g: list(v) for g, v in per_genre.items()}, unsure,
                        needed=(overall, genre))
    n, agreed = check.anchors, check.agreed
    if n == 0:
        check.status = "skipped"
        check.reason = (f"anchor check skipped: asked again, the old model was sure of none "
                        f"of the {unsure} held-out anchor track(s)")
        return check
    if n < MIN_ANCHORS_TO_JUDGE:
        check.status = "skipped"
        check.reason = (f"anchor check skipped: only {n} held-out anchor track(s) "
                        f"({MIN_ANCHORS_TO_JUDGE} needed); agreement {agreed}/{n}")
        return check
    failures = []
    if agreed / n + 1e-9 < overall and n - agreed > 1:
        failures.append(f"agrees with the old model on only {agreed}/{n} held-out anchor "
                        f"tracks ({agreed / n:.3f}, needs {overall:.2f})")
    weak = [f"{g} {k}/{m}" for g, (k, m) in sorted(check.per_genre.items())
            if m >= MIN_ANCHORS_TO_JUDGE and k / m + 1e-9 < genre]
    if weak:
        failures.append(f"{', '.join(weak)} (each genre needs {genre:.2f})")
    if failures:
        worst = sorted((k / m, g, k, m) for g, (k, m) in check.per_genre.items() if m and k < m)
        failures.append("answers changed most in " + ", ".join(
            f"{g} {k}/{m}" for _, g, k, m in worst[:6]))
        check.status = "failed"
        check.reason = "forgets genres without labels: " + "; ".join(failures)
    else:
        check.reason = f"agrees with the old model on {agreed}/{n} held-out anchor tracks"
    return check


@dataclass
class Scores:
    """Per-song answers of the old and the new model on the same judged songs:
    path -> (true genre, old model's answer, new model's answer)."""

    songs: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def add(self, old_report: dict[str, Any], new_report: dict[str, Any]) -> None:
        new = {s["path"]: s["predicted"] for s in new_report.get("songs", [])}
        for song in old_report.get("songs", []):
            if song["path"] in new:
                self.songs[song["path"]] = (song["genre"], song["predicted"], new[song["path"]])

    @property
    def n(self) -> int:
        return len(self.songs)

    def correct(self, which: int) -> int:
        return sum(1 for v in self.songs.values() if v[which] == v[0])


def _tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


@dataclass
class Verdict:
    promote: bool
    reasons: list[str]
    figures: dict[str, Any]


def decide(scores: Scores, basis: str, added: list[str], anchors: AnchorCheck) -> Verdict:
    """The promotion rule of the module docstring, on ``scores`` (judged on ``basis``,
    e.g. "8 held-out songs"); ``added``: genres the candidate has and the old model lacks."""
    n, old, new = scores.n, scores.correct(1), scores.correct(2)
    only_new = sum(1 for t, o, w in scores.songs.values() if w == t != o)
    only_old = sum(1 for t, o, w in scores.songs.values() if o == t != w)
    genres = sorted({t for t, _, _ in scores.songs.values()})
    common = max(genres, key=lambda g: sum(1 for t, _, _ in scores.songs.values() if t == g),
                 default=None)
    majority = sum(1 for t, _, _ in scores.songs.values() if t == common)
    p_gain = _tail(only_new, only_new + only_old, 0.5) if only_new > only_old else 1.0
    p_chance = _tail(new, n, majority / n) if n else 1.0
    unchecked = [g for g in added if g not in genres]
    figures = {"judged_on": basis, "n_songs": n, "old_correct": old, "new_correct": new,
               "only_new_right": only_new, "only_old_right": only_old,
               "p_gain": round(p_gain, 4), "most_common_genre": common,
               "most_common_share": round(majority / n, 4) if n else None,
               "p_above_chance": round(p_chance, 4), "added_genres": added,
               "unchecked_added_genres": unchecked, "threshold_p": SHOWN_P}
    reasons: list[str] = []
    if n == 0:
        reasons.append(f"no songs to judge the new model on ({basis})")
    elif new < old:
        reasons.append(f"new model less accurate on {basis} ({new}/{n} against {old}/{n})")
    elif p_gain >= SHOWN_P and p_chance >= SHOWN_P:
        reasons.append(
            f"{basis} cannot show the new model learned the labels: {new}/{n} right against "
            f"the old model's {old}/{n} (p={p_gain:.2f}), and always answering {common} "
            f"would get {majority}/{n} (p={p_chance:.2f}; {SHOWN_P} needed)")
    elif new == old and unchecked:
        reasons.append(f"a tie on {basis} while the new model adds "
                       f"{', '.join(unchecked)}, which no judged song checks")
    if anchors.status == "failed":
        reasons.append(f"new model {anchors.reason}")
    return Verdict(not reasons, reasons, figures)


def evaluate_songs(bundle: Path, songs: Labelled, cfg: Config) -> dict[str, Any]:
    """The evaluate report of ``bundle`` on ``songs`` with each song's answer."""
    from classifier import training

    if not songs:
        return {"accuracy": 0.0, "n_songs": 0, "songs": []}
    return training.evaluate(bundle, songs, clips_per_track=cfg.clips_per_track,
                             cache_dir=cfg.cache_path, workers=cfg.workers or None,
                             per_song=True)


def check_anchors(base: Path, candidate: Path, held: Labelled, cfg: Config) -> AnchorCheck:
    """Ask the old and the new model about each held-out anchor (path, genre it was chosen
    for), on the same clips as in real use, and judge the agreement
    (:func:`judge_agreement`). An anchor counts when the old model, asked again, still
    gives the genre it was chosen for with confidence >= ANCHOR_CONFIDENCE (the catalogue's
    prediction may come from an older model or other clips); that answer is the one the
    new model should keep."""
    from classifier.predict import Classifier

    if not held:
        return AnchorCheck("skipped", "anchor check skipped: no anchor tracks (no uncorrected "
                           "library track the old model is sure of in a genre without labels)")
    old = Classifier.load(base, clips_per_track=cfg.clips_per_track)
    new = Classifier.load(candidate, clips_per_track=cfg.clips_per_track)
    old_feats = _anchor_features(old.params, held, cfg)
    new_feats = old_feats if new.params == old.params else _anchor_features(
        new.params, held, cfg)
    per_genre: dict[str, list[int]] = {}
    unsure = 0
    changed: list[dict[str, str]] = []
    for path, chosen_as in held:
        if path not in old_feats or path not in new_feats:
            continue  # unreadable now; Extractor logged it
        probs = old.probabilities(old_feats[path]).mean(axis=0)
        was = old.labels[int(probs.argmax())]
        if probs.max() < ANCHOR_CONFIDENCE or was != chosen_as:
            unsure += 1
            continue
        now = new.labels[int(new.probabilities(new_feats[path]).mean(axis=0).argmax())]
        counts = per_genre.setdefault(was, [0, 0])
        counts[0] += now == was
        counts[1] += 1
        if now != was and len(changed) < CHANGED_LISTED:
            changed.append({"path": path, "old": was, "new": now})
    check = judge_agreement(per_genre, unsure, cfg.retrain.min_anchor_agreement,
                            cfg.retrain.min_genre_agreement)
    check.changed = changed
    return check


def _anchor_features(params: Any, held: Labelled, cfg: Config) -> dict[str, Any]:
    """path -> (K, n_mels, frames) spread-clip features, through the feature cache."""
    from classifier.dataset import Song
    from classifier.extract import Extractor

    extractor = Extractor(params, cfg.cache_path, progress=False, workers=cfg.workers or None)
    songs, feats = extractor.many([Song(Path(p), g, "anchor") for p, g in held],
                                  cfg.clips_per_track, None, "anchor check")
    return {str(song.path): f for song, f in zip(songs, feats, strict=True)}
