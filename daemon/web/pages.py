"""The server-rendered pages: review (``/``), library, models, login.

Templates are Jinja2 with autoescaping on for every template, so a tag or file name
holding markup is shown as text; data the scripts need goes into ``data-`` attributes
through ``tojson`` (which escapes ``<``, ``>``, ``&`` and quotes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from daemon.web.context import context

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def _basename(path: str) -> str:
    return Path(path).name


TEMPLATES.filters.update(pct=_pct, duration=_duration, basename=_basename)


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request)
    html = TEMPLATES.get_template(name).render(
        page=name.removesuffix(".html"), token_set=bool(ctx.cfg.web_token),
        query=lambda **kw: _query_string(request, **kw), **values)
    return HTMLResponse(html, status_code=status_code,
                        headers={"Cache-Control": "no-store"})


def _query_string(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status_code=status, status=status, message=message)


def review_page(request: Request) -> Response:
    from daemon.web.api import ApiError
    from daemon.web.labels import vocabulary
    from storage.review import predicted_counts

    ctx = context(request)
    try:
        data = ctx.review_page(request.query_params)
    except ApiError as e:
        return error_page(request, e.status, e.message)
    vocab = vocabulary(ctx.engine, ctx.cfg)
    return render(request, "review.html", data=data, genres=vocab.names(),
                  models=sorted(predicted_counts(ctx.engine)))


def library_page(request: Request) -> Response:
    from daemon.web.api import ApiError, track_filter
    from storage.query import SORTS, TrackFilter, count, query_tracks, stats
    from storage.schema import STATUSES

    ctx = context(request)
    try:
        flt = track_filter(ctx, request.query_params)
    except ApiError as e:
        return error_page(request, e.status, e.message)
    rows = query_tracks(ctx.engine, flt)
    errors = query_tracks(ctx.engine, TrackFilter(status="error", limit=200))
    figures = stats(ctx.engine)
    top = max(figures["genres"].values(), default=1)
    return render(request, "library.html", stats=figures, top=top, rows=rows,
                  total=count(ctx.engine, flt), flt=flt, errors=errors, statuses=STATUSES,
                  sorts=SORTS, params=dict(request.query_params),
                  error_total=figures["status"].get("error", 0))


def models_page(request: Request) -> Response:
    from daemon.web import models

    return render(request, "models.html", data=models.overview(context(request)))


def login_form(request: Request) -> Response:
    return render(request, "login.html", next=_next(request.query_params.get("next")),
                  failed=False)


async def login(request: Request) -> Response:
    """The token typed in the form becomes the session cookie (HttpOnly, SameSite=Strict)."""
    import hmac

    from daemon.web.security import COOKIE, session_value

    ctx = context(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    typed = (form.get("token") or [""])[0].strip()
    target = _next((form.get("next") or ["/"])[0])
    if not ctx.cfg.web_token:
        return RedirectResponse(target, status_code=303)
    if not hmac.compare_digest(typed.encode(), ctx.cfg.web_token.encode()):
        return render(request, "login.html", status_code=401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session_value(ctx.cfg.web_token), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        max_age=30 * 24 * 3600)
    return response


def logout(request: Request) -> Response:
    from daemon.web.security import COOKIE

    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _next(target: str | None) -> str:
    """Only a path on this server (no scheme, no //host): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


ROUTES = [
    Route("/", review_page),
    Route("/library", library_page),
    Route("/models", models_page),
    Route("/login", login_form),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
