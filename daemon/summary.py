"""What a scan or a batch of the queue did: the counts a run reports in one line."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Summary:
    """What a scan or a batch did; ``line()`` is the one-line report."""

    scanned: int = 0
    classified: int = 0
    unchanged: int = 0
    errors: int = 0
    missing: int = 0
    moved: int = 0
    retried: int = 0  # files decoded again after a decode process died
    unreadable: int = 0  # folders that could not be listed or looked into (tracks kept)
    not_regular: int = 0  # FIFOs, devices, sockets, symlink loops: counted, never opened
    tags: dict[str, int] = field(default_factory=dict)
    decoded: int = 0  # files whose audio was decoded
    from_embeddings: int = 0  # classified from a stored embedding: nothing decoded
    # Tracks the catalogue refused to record (an integrity error on the row): left as they
    # were (pending), for the caller to try again later.
    deferred: list[str] = field(default_factory=list)
    done_paths: list[str] = field(default_factory=list)  # classified or recorded as errors

    def line(self) -> str:
        text = (
            f"scanned {self.scanned}: {self.classified} classified, "
            f"{self.unchanged} unchanged, {self.errors} error{'' if self.errors == 1 else 's'}"
        )
        extra = [f"{self.missing} missing"] if self.missing else []
        extra += [f"{self.moved} moved"] if self.moved else []
        extra += [f"{self.retried} retried after a decoder crash"] if self.retried else []
        extra += [f"{self.from_embeddings} from stored embeddings, not decoded"
                  ] if self.from_embeddings else []
        extra += [f"{len(self.deferred)} refused by the catalogue"] if self.deferred else []
        extra += [f"{self.unreadable} folder{'' if self.unreadable == 1 else 's'} "
                  "unreadable"] if self.unreadable else []
        extra += [f"{self.not_regular} skipped: not regular files"] if self.not_regular else []
        extra += [f"tags {k} {v}" for k, v in sorted(self.tags.items())]
        return text + (f" ({', '.join(extra)})" if extra else "")
