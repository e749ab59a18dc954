"""The JSON API the pages use (documented in the README, "genred web").

Errors are ``{"error": "..."}`` with 400 (bad parameter or body), 404 (no such track,
model or file), 409 (a retrain already runs), 413 (body too large, see ``security``) or
422 (a genre outside the vocabulary: ``suggestions`` lists the closest known names).
Handlers are plain functions: Starlette runs them in its thread pool, so the blocking
catalogue calls never stall the event loop.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from daemon.web import labels
from daemon.web.context import WebContext, context

LIST_LIMIT, MAX_LIMIT = 100, 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status)


# --- parameters ------------------------------------------------------------------------

def _float01(params: Any, name: str) -> float | None:
    text = params.get(name)
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ApiError(400, f"{name} must be between 0 and 1, not {text}")
    return value


def _count(params: Any, name: str, default: int | None, maximum: int | None = None) -> int | None:
    text = params.get(name)
    if text in (None, ""):
        return default
    if not text.isdigit():
        raise ApiError(400, f"{name} must be a whole number, 0 or more, not {text}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise ApiError(400, f"{name} must be at most {maximum}")
    return value


def _flag(params: Any, name: str) -> bool | None:
    text = params.get(name)
    if text in (None, ""):
        return None
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false, not {text}")


def _choice(params: Any, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    text = params.get(name) or default
    if text is not None and text not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, not {text}")
    return text


def track_filter(ctx: WebContext, params: Any) -> Any:
    """``genred query``'s filters from query parameters (same names, same checks)."""
    from storage.query import SORTS, TrackFilter
    from storage.schema import STATUSES

    low, high = _float01(params, "min_confidence"), _float01(params, "max_confidence")
    if low is not None and high is not None and high < low:
        raise ApiError(400, f"max_confidence {high:g} is below min_confidence {low:g}")
    raw = params.get("genre") or None
    genre = ctx.cfg.tree.query_names(raw, ctx.cfg.genre_aliases) if raw else None
    return TrackFilter(
        genre=genre, min_confidence=low, max_confidence=high,
        corrected=_flag(params, "corrected"), status=_choice(params, "status", STATUSES, None),
        path=params.get("path") or None, model=params.get("model") or None,
        limit=_count(params, "limit", LIST_LIMIT, MAX_LIMIT),
        offset=_count(params, "offset", 0), sort=_choice(params, "sort", SORTS, "path") or "path",
        descending=bool(_flag(params, "desc")), artist=params.get("artist") or None,
        album=params.get("album") or None)


def _track_id(request: Request) -> int:
    return int(request.path_params["track_id"])


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


# --- tracks ----------------------------------------------------------------------------

def list_tracks(request: Request) -> JSONResponse:
    from storage.query import count, query_tracks

    ctx = context(request)
    flt = track_filter(ctx, request.query_params)
    rows = query_tracks(ctx.engine, flt, with_id=True)
    if _flag(request.query_params, "tags"):
        if len(rows) > 200:
            raise ApiError(400, "tags=true reads files: at most 200 rows (use limit)")
        for row in rows:
            row["tags"] = ctx.title_tags(row)
    return JSONResponse({"tracks": rows, "total": count(ctx.engine, flt),
                         "limit": flt.limit, "offset": flt.offset})


def get_track(request: Request) -> JSONResponse:
    ctx = context(request)
    return JSONResponse(ctx.track_detail(_track_id(request)))


def _known_track(ctx: WebContext, track_id: int) -> str:
    from storage.review import track_path

    found = track_path(ctx.engine, track_id)
    if found is None:
        raise ApiError(404, f"no track {track_id} in the catalogue")
    return found[0]


def _genre_from(ctx: WebContext, body: dict[str, Any]) -> list[str]:
    new = body.get("new_genre", False)
    if not isinstance(new, bool):
        raise ApiError(400, "new_genre must be true or false")
    try:
        return labels.resolve_genre(ctx.engine, ctx.cfg, body.get("genre"), new)
    except labels.BadGenre as e:
        raise ApiError(400, str(e)) from e
    except labels.GenreRefused as e:
        raise ApiError(422, str(e), genre=e.genre, suggestions=e.suggestions) from e


async def post_correction(request: Request) -> JSONResponse:
    body = await _json_body(request)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_correct_one, request, body)


def _correct_one(request: Request, body: dict[str, Any]) -> JSONResponse:
    ctx = context(request)
    track_id = _track_id(request)
    path = _known_track(ctx, track_id)
    genre = _genre_from(ctx, body)
    changed = labels.label_tracks(ctx.engine, ctx.cfg, [path], genre)
    return JSONResponse({"changed": changed, "track": ctx.track_detail(track_id)})


def delete_correction(request: Request) -> JSONResponse:
    ctx = context(request)
    track_id = _track_id(request)
    removed = labels.unlabel_track(ctx.engine, ctx.cfg, _known_track(ctx, track_id))
    return JSONResponse({"removed": removed, "track": ctx.track_detail(track_id)})


async def post_album_correction(request: Request) -> JSONResponse:
    body = await _json_body(request)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_correct_album, request, body)


def _correct_album(request: Request, body: dict[str, Any]) -> JSONResponse:
    """Every track of the row's folder (scope ``folder``, the default), or those of the
    folder whose album tag is the row's (scope ``album``)."""
    from storage.review import folder_track_ids, track_path

    ctx = context(request)
    track_id = _track_id(request)
    path = _known_track(ctx, track_id)
    scope = body.get("scope", "folder")
    if scope not in ("folder", "album"):
        raise ApiError(400, "scope must be folder or album")
    genre = _genre_from(ctx, body)
    ids = folder_track_ids(ctx.engine, os.path.dirname(path))
    if scope == "album":
        album = ctx.title_tags(ctx.track_row(track_id) or {"path": path}).get("album")
        if not album:
            raise ApiError(400, "this track has no album tag; use scope folder")
        ids = [r["id"] for r in ctx.rows(ids) if r["tags"].get("album") == album]
    paths = [p for p in (track_path(ctx.engine, i) for i in ids) if p is not None]
    changed = labels.label_tracks(ctx.engine, ctx.cfg, [p for p, _ in paths], genre)
    return JSONResponse({"genre": genre[0], "genres": genre, "tracks": ids,
                         "changed": changed})


def track_audio(request: Request) -> Response:
    from daemon.web.audio import AudioUnavailable
    from storage.review import track_path

    ctx = context(request)
    track_id = _track_id(request)
    found = track_path(ctx.engine, track_id)
    if found is None or found[1] == "missing":
        raise ApiError(404, f"no track {track_id} with a file in the catalogue")
    row = ctx.track_row(track_id)
    try:
        playable = ctx.audio.playable(track_id, found[0], row.get("format") if row else None)
    except AudioUnavailable as e:
        status = 404 if "gone" in str(e) or "regular" in str(e) else 422
        raise ApiError(status, str(e)) from e
    _check_range(request.headers.get("range"), playable.path.stat().st_size)
    return FileResponse(playable.path, media_type=playable.mime,
                        headers={"Cache-Control": "private, max-age=300"})


def _check_range(header: str | None, size: int) -> None:
    """A range that starts past the end is 416 as JSON (FileResponse would answer text);
    everything else about ranges is FileResponse's."""
    if not header or not header.startswith("bytes="):
        return
    starts = [part.split("-", 1)[0].strip() for part in header[6:].split(",")]
    if starts and all(s.isdigit() and int(s) >= size for s in starts):
        raise ApiError(416, f"range {header[6:]} starts past the end ({size} bytes)",
                       size=size)


# --- vocabulary, models, retrain, status ---------------------------------------------

def list_genres(request: Request) -> JSONResponse:
    from storage.genres import fold
    from storage.vocabulary import counts

    ctx = context(request)
    vocab = labels.vocabulary(ctx.engine, ctx.cfg)
    model = {fold(g) for g in vocab.model}
    used = counts(ctx.engine)
    rows = []
    for name in vocab.names():
        c = used.get(fold(name))
        rows.append({"name": name, "in_model": fold(name) in model,
                     "tracks": c.tracks if c else 0, "predicted": c.predictions if c else 0,
                     "labels": c.labels if c else 0})
    return JSONResponse({"genres": rows, "model_labels": vocab.model})


def list_models(request: Request) -> JSONResponse:
    from daemon.web import models

    return JSONResponse(models.overview(context(request)))


def model_image(request: Request) -> Response:
    from daemon.web import models

    ctx = context(request)
    image = models.image_path(ctx, request.path_params["version"], request.path_params["name"])
    if image is None:
        raise ApiError(404, "no such model image")
    return FileResponse(image, media_type="image/png")


def activate_model(request: Request) -> JSONResponse:
    from daemon.web import models

    ctx = context(request)
    result = models.activate(ctx, request.path_params["version"])
    if result is None:
        raise ApiError(404, f"no model version {request.path_params['version']}")
    return JSONResponse(result)


def start_retrain(request: Request) -> JSONResponse:
    from daemon.web.jobs import RetrainRunning

    ctx = context(request)
    try:
        return JSONResponse(ctx.retrain.start(), status_code=202)
    except RetrainRunning as e:
        raise ApiError(409, str(e), job=ctx.retrain.snapshot()) from e


def retrain_progress(request: Request) -> JSONResponse:
    return JSONResponse(context(request).retrain.snapshot())


def status(request: Request) -> JSONResponse:
    from daemon.status import read_status

    ctx = context(request)
    data = read_status(ctx.engine, ctx.cfg)
    data["retrain_job"] = ctx.retrain.snapshot()
    return JSONResponse(json.loads(json.dumps(data, default=str)))


def review(request: Request) -> JSONResponse:
    ctx = context(request)
    page = ctx.review_page(request.query_params)
    return JSONResponse(page)


ROUTES = [
    Route("/api/tracks", list_tracks),
    Route("/api/review", review),
    Route("/api/tracks/{track_id:int}", get_track),
    Route("/api/tracks/{track_id:int}/correction", post_correction, methods=["POST"]),
    Route("/api/tracks/{track_id:int}/correction", delete_correction, methods=["DELETE"]),
    Route("/api/tracks/{track_id:int}/album-correction", post_album_correction,
          methods=["POST"]),
    Route("/api/tracks/{track_id:int}/audio", track_audio),
    Route("/api/genres", list_genres),
    Route("/api/models", list_models),
    Route("/api/models/{version}/activate", activate_model, methods=["POST"]),
    Route("/api/models/{version}/{name}", model_image),
    Route("/api/retrain", start_retrain, methods=["POST"]),
    Route("/api/retrain", retrain_progress),
    Route("/api/status", status),
]
