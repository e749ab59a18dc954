"""What one retrain run decided, and why: ``RetrainOutcome`` (its one-line summary for the
CLI and the log, and the TrainingRun row it records), and ``RetrainBusy`` when another run
holds the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RetrainBusy(Exception):
    """Another retrain holds the lock (the scheduler's, or a `retrain --now`)."""


@dataclass
class RetrainOutcome:
    decision: str
    reason: str
    run_id: int
    base_model: str | None = None
    new_model: str | None = None
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    n_labels: int = 0
    n_new_labels: int = 0
    requeued: int = 0
    # Genres waiting for enough labelled songs (genre -> songs), and how many songs the
    # accuracies rest on.
    waiting: dict[str, int] = field(default_factory=dict)
    n_judged: int = 0
    # How often the new model gave the old one's answer on held-out anchors (None: not
    # measured), and the whole check (AnchorCheck.as_json; empty when no model was trained).
    anchor_agreement: float | None = None
    anchor_check: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: the decision, its reason, the accuracies and, when it was measured,
        the agreement with the old model on held-out anchors per genre."""
        text = f"{self.decision}: {self.reason}"
        figures = []
        if self.old_accuracy is not None and self.new_accuracy is not None:
            figures.append(f"accuracy {self.old_accuracy:.3f} -> {self.new_accuracy:.3f} on "
                           f"{self.n_judged} song(s) neither model trained on")
        per_genre = self.anchor_check.get("per_genre") or {}
        if per_genre:
            figures.append("anchor agreement " + ", ".join(
                f"{g} {v['agreed']}/{v['anchors']}" for g, v in per_genre.items()))
        if self.waiting:
            figures.append("waiting for more songs: " + ", ".join(
                f"{g} ({n})" for g, n in self.waiting.items()))
        for child, parent in (self.metrics.get("as_parent") or {}).items():
            figures.append(f"{child} trained as {parent} until it has its own songs")
        return text + (f" ({'; '.join(figures)})" if figures else "")

    def record(self) -> dict[str, Any]:
        """The TrainingRun fields this outcome sets."""
        return {"decision": self.decision, "reason": self.reason,
                "base_model": self.base_model, "new_model": self.new_model,
                "n_labels": self.n_labels, "old_accuracy": self.old_accuracy,
                "new_accuracy": self.new_accuracy,
                "metrics": {**self.metrics, "requeued": self.requeued,
                            "n_new_labels": self.n_new_labels, "waiting": self.waiting,
                            "n_judged": self.n_judged}}

    @classmethod
    def from_record(cls, run: dict[str, Any]) -> RetrainOutcome:
        """The outcome a (child process's) run row holds."""
        metrics = dict(run.get("metrics") or {})
        check = dict(metrics.get("anchor_check") or {})
        return cls(run["decision"], run["reason"] or "", run["id"], run["base_model"],
                   run["new_model"], run["old_accuracy"], run["new_accuracy"],
                   run["n_labels"] or 0, int(metrics.get("n_new_labels") or 0),
                   int(metrics.get("requeued") or 0), dict(metrics.get("waiting") or {}),
                   int(metrics.get("n_judged") or 0), check.get("agreement"), check, metrics)
