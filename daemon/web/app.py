"""The ASGI app: the pages, the JSON API and the static files, behind ``security.Guard``.

``create_app(cfg)`` opens the catalogue (``storage.db.open_catalogue``) and builds
everything; ``daemon.web.server`` runs it with uvicorn.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from daemon.config import Config
from daemon.web import api, pages
from daemon.web.audio import AudioCache
from daemon.web.context import WebContext
from daemon.web.jobs import RetrainJob
from daemon.web.security import Guard, is_loopback

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, api.ApiError)
    return exc.response()


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return pages.error_page(request, exc.status_code, str(exc.detail))


def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("error serving %s", request.url.path, exc_info=exc)
    message = f"internal error: {type(exc).__name__}"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=500)
    return HTMLResponse(f"<h1>500</h1><p>{type(exc).__name__}</p>", status_code=500)


def create_app(cfg: Config, host: str = "127.0.0.1", engine: Engine | None = None) -> Guard:
    """The whole web app for ``cfg``, as it must be served on ``host``."""
    from storage.db import open_catalogue

    engine = engine or open_catalogue(cfg.db_url)
    ctx = WebContext(cfg=cfg, engine=engine, audio=AudioCache(cfg.cache_path / "web-audio"),
                     retrain=RetrainJob(engine, cfg))
    app = Starlette(
        routes=[*api.ROUTES, *pages.ROUTES,
                Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")],
        exception_handlers={api.ApiError: _api_error, HTTPException: _http_error,
                            Exception: _server_error},
    )
    app.state.genred = ctx
    return Guard(app, token=cfg.web_token, loopback=is_loopback(host))
