"""What every request of the web app shares: the config, the catalogue engine, the audio
cache and the retrain job; and the track views the API and the pages both show."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request

from daemon.config import Config
from daemon.web.audio import AudioCache, browser_plays
from daemon.web.jobs import RetrainJob

REVIEW_PAGE = 25
ORDERS_KEPT = 8  # review orders kept (one per filter recently used)


@dataclass
class WebContext:
    cfg: Config
    engine: Engine
    audio: AudioCache
    retrain: RetrainJob
    orders: dict[Any, tuple[tuple[int, int], Any]] = field(default_factory=dict)
    orders_lock: threading.Lock = field(default_factory=threading.Lock)

    def title_tags(self, row: dict[str, Any]) -> dict[str, str | int | None]:
        """Title, artist, album, album artist, track number and year of a query row: the
        catalogue's, read at scan time; a track classified before genred stored them
        (none of them set) has its file read (cached)."""
        from storage.titles import TitleTags, title_tags

        stored = TitleTags(row.get("title"), row.get("artist"), row.get("album"),
                           row.get("album_artist"), row.get("track_number"), row.get("year"))
        if stored == TitleTags() and row.get("status") == "ok":
            return title_tags(row["path"]).as_json()
        return stored.as_json()

    def track_row(self, track_id: int) -> dict[str, Any] | None:
        """The ``genred query`` row of one track (plus ``id``), or None."""
        from storage.query import TrackFilter, query_tracks

        rows = query_tracks(self.engine, TrackFilter(ids=(track_id,)), with_id=True)
        return rows[0] if rows else None

    def rows(self, ids: list[int]) -> list[dict[str, Any]]:
        """Rows for ``ids`` in that order, each with its review details."""
        from storage.query import TrackFilter, query_tracks

        if not ids:
            return []
        rows = query_tracks(self.engine, TrackFilter(ids=tuple(ids)), with_id=True)
        found = {r["id"]: r for r in rows}
        return [self._details(found[i]) for i in ids if i in found]

    def track_detail(self, track_id: int) -> dict[str, Any]:
        """One track as the API shows it; ApiError 404 when the catalogue has no such id."""
        from daemon.web.api import ApiError
        from storage.review import outlier_info

        row = self.track_row(track_id)
        if row is None:
            raise ApiError(404, f"no track {track_id} in the catalogue")
        detail = self._details(row)
        folder_genre = outlier_info(self.engine, row["path"], row["predicted_genre"])
        detail["outlier"] = folder_genre is not None
        detail["folder_genre"] = folder_genre
        return detail

    def _details(self, row: dict[str, Any]) -> dict[str, Any]:
        """A query row with what a review row needs: tags, genres ranked by probability,
        the runner-up, the margin and the clip windows the model listened to."""
        from storage.review import margin

        probs: dict[str, float] = row.get("probabilities") or {}
        ranked = sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            **row,
            "tags": self.title_tags(row),
            "ranked": [{"genre": g, "probability": p} for g, p in ranked],
            "runner_up": ({"genre": ranked[1][0], "probability": ranked[1][1]}
                          if len(ranked) > 1 else None),
            "margin": margin(probs, row.get("confidence")) if probs else None,
            "clips": self.clip_windows(row.get("duration"), row.get("model")),
            "audio": {"url": f"/api/tracks/{row['id']}/audio",
                      "transcoded": not browser_plays(row.get("format"))},
        }

    def clip_windows(self, duration: float | None, model: str | None) -> list[dict[str, float]]:
        """The windows ``classifier.audio.clip_starts`` picks for this track: the audio
        the prediction was made from."""
        from classifier.audio import clip_starts

        if not duration:
            return []
        seconds = _clip_seconds(str(self.cfg.model_store_path), self.cfg.model, model)
        return [{"start": s, "end": round(min(s + seconds, duration), 3)}
                for s in clip_starts(duration, self.cfg.clips_per_track, seconds)]

    def review_page(self, params: Any) -> dict[str, Any]:
        """One page of the review queue as JSON-ready data (filters from ``params``)."""
        from daemon.web.api import _count, _float01
        from storage.review import ReviewFilter, review_queue

        low, high = _float01(params, "min_confidence"), _float01(params, "max_confidence")
        flt = ReviewFilter(
            genre=params.get("genre") or None, folder=params.get("folder") or None,
            min_confidence=low, max_confidence=high, model=params.get("model") or None,
            limit=_count(params, "limit", REVIEW_PAGE, 200) or REVIEW_PAGE,
            offset=_count(params, "offset", 0) or 0)
        page = review_queue(self.engine, flt, self._order(flt))
        rows = self.rows([e.track_id for e in page.entries])
        by_id = {e.track_id: e for e in page.entries}
        for row in rows:
            entry = by_id[row["id"]]
            row["outlier"], row["folder_genre"] = entry.outlier, entry.folder_genre
        return {"tracks": rows, "total": page.total, "limit": flt.limit, "offset": flt.offset,
                "filter": {"genre": flt.genre, "folder": flt.folder, "min_confidence": low,
                           "max_confidence": high, "model": flt.model}}


    def _order(self, flt: Any) -> Any:
        """``storage.review.review_order`` for ``flt``, kept while no prediction changes
        (a 100,000-track order takes seconds; labels are applied fresh on every page)."""
        from dataclasses import replace

        from storage.review import predictions_stamp, review_order

        key = replace(flt, limit=0, offset=0)
        stamp = predictions_stamp(self.engine)
        with self.orders_lock:
            hit = self.orders.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        order = review_order(self.engine, flt)
        with self.orders_lock:
            self.orders[key] = (stamp, order)
            while len(self.orders) > ORDERS_KEPT:
                self.orders.pop(next(iter(self.orders)))
        return order


@functools.lru_cache(maxsize=64)
def _clip_seconds(store_root: str, pinned: str, version: str | None) -> float:
    """The clip length of model ``version`` (its feature params), 30 s when unknown;
    ``pinned`` is the config's ``model`` (a bundle outside the store, maybe)."""
    from pathlib import Path

    from classifier.audio import CLIP_SECONDS
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelStore

    if not version:
        return CLIP_SECONDS
    from classifier.store import ModelNotFound

    store = ModelStore(Path(store_root))
    try:
        paths = [store.resolve(pinned)] if pinned else []
        paths += [info.path for info in store.versions()]
        for path in paths:
            meta = read_meta(path)
            if meta.version == version:
                return float(meta.params.clip_seconds)
    except (BundleError, ModelNotFound, OSError):
        pass
    return CLIP_SECONDS


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.genred
    return ctx
