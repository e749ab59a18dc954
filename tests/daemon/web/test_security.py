"""Who may use `genred web`: loopback by default, a token for anything else, no request
from another site's page, no DNS-rebound host. Real `genred web` / `genred run --web`
processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.daemon.daemon_helpers import GENRED
from tests.daemon.web.webkit import WebLibrary, WebServer, request

TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> WebLibrary:
    return WebLibrary.create(tmp_path_factory.mktemp("web-sec"), seconds=6.0,
                             layout={"Album": [("a.mp3", "Drone"), ("b.mp3", "Pulse")]})


@pytest.fixture(scope="module")
def open_server(library: WebLibrary) -> Iterator[str]:
    web = WebServer(library.lib)
    yield web.url
    assert web.stop() == 0, "".join(web.output)


@pytest.fixture(scope="module")
def token_server(library: WebLibrary) -> Iterator[str]:
    web = WebServer(library.lib, env={**library.env, "GENRED_WEB_TOKEN": TOKEN})
    yield web.url
    assert web.stop() == 0, "".join(web.output)


def test_a_non_local_address_without_a_token_is_refused(library: WebLibrary) -> None:
    proc = subprocess.run([str(GENRED), "--db", str(library.lib.db), "web", "--host",
                           "0.0.0.0", "--port", "0"], env=library.env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in proc.stderr
    assert "web_token" in proc.stderr and "serving" not in proc.stdout
    daemon = subprocess.run([str(GENRED), "--db", str(library.lib.db), "run", "--web",
                             "--web-host", "0.0.0.0", "--watch", str(library.lib.music)],
                            env=library.env, capture_output=True, text=True, timeout=120)
    assert daemon.returncode == 2 and "without a token" in daemon.stderr


def test_a_port_in_use_is_one_line_naming_the_setting(library: WebLibrary) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for verb in (["web", "--port", port],
                     ["run", "--web", "--web-port", port, "--watch", str(library.lib.music)]):
            proc = subprocess.run([str(GENRED), "--db", str(library.lib.db), *verb],
                                  env=library.env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, (verb, proc.stderr)
            assert proc.stderr.strip().splitlines()[-1] == (
                f"genred: the web page cannot listen on 127.0.0.1:{port}: Address already in "
                "use; another program listens there: choose another port (--port, web_port)")
            assert "uvicorn" not in proc.stderr and "Traceback" not in proc.stderr


def test_with_a_token_a_non_local_address_serves_to_those_who_have_it(
        library: WebLibrary) -> None:
    web = WebServer(library.lib, "--host", "0.0.0.0",
                    env={**library.env, "GENRED_WEB_TOKEN": TOKEN})
    try:
        port = web.url.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        assert request(f"{url}/api/status").status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert request(f"{url}/api/status", headers=auth).status == 200
    finally:
        assert web.stop() == 0


def test_a_cross_origin_post_is_refused(library: WebLibrary, open_server: str) -> None:
    track = library.track_id("Album/a.mp3")
    url = f"{open_server}/api/tracks/{track}/correction"
    for headers in ({"Origin": "http://evil.example"},
                    {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Referer": "http://evil.example/page"}):
        reply = request(url, "POST", {"genre": "Drone"}, headers=headers)
        assert reply.status == 403, headers
        assert reply.json() == {"error": "cross-origin request refused"}
    assert library.row("Album/a.mp3")["corrected_genre"] is None
    same = request(url, "POST", {"genre": "Drone"},
                   headers={"Origin": open_server, "Sec-Fetch-Site": "same-origin"})
    assert same.status == 200
    assert library.row("Album/a.mp3")["corrected_genre"] == "Drone"


def test_a_rebound_host_name_is_refused(open_server: str) -> None:
    reply = request(f"{open_server}/api/tracks", headers={"Host": "attacker.example"})
    assert reply.status == 400 and b"Drone" not in reply.body
    assert request(f"{open_server}/api/tracks", headers={"Host": "localhost"}).status == 200


def test_every_response_carries_a_strict_content_security_policy(open_server: str) -> None:
    for path in ("/", "/library", "/models", "/api/status"):
        reply = request(open_server + path)
        assert reply.status == 200, path
        assert "script-src 'self'" in reply.headers["content-security-policy"]
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_with_a_token_the_api_needs_it(library: WebLibrary, token_server: str) -> None:
    track = library.track_id("Album/b.mp3")
    assert request(f"{token_server}/api/tracks").status == 401
    assert request(f"{token_server}/api/tracks/{track}/audio").status == 401
    assert request(f"{token_server}/api/tracks/{track}/correction", "POST",
                   {"genre": "Pulse"}).status == 401
    wrong = request(f"{token_server}/api/tracks",
                    headers={"Authorization": "Bearer not-it"})
    assert wrong.status == 401
    right = request(f"{token_server}/api/tracks",
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200 and len(right.json()["tracks"]) == 2


def test_the_login_form_sets_a_session_cookie(token_server: str) -> None:
    page = request(f"{token_server}/")
    assert page.status == 303 and page.headers["location"].startswith("/login")
    assert request(f"{token_server}/login").status == 200
    bad = request(f"{token_server}/login", "POST", raw=b"token=guess&next=/models",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status == 401 and "set-cookie" not in bad.headers
    good = request(f"{token_server}/login", "POST",
                   raw=f"token={TOKEN.replace(' ', '+')}&next=/models".encode(),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert good.status == 303 and good.headers["location"] == "/models"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    session = cookie.split(";")[0]
    assert request(f"{token_server}/models", headers={"Cookie": session}).status == 200
    assert request(f"{token_server}/api/status", headers={"Cookie": session}).status == 200
    evil = request(f"{token_server}/login", "POST",
                   raw=f"token={TOKEN.replace(' ', '+')}&next=//evil.example/".encode(),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert evil.headers["location"] == "/"  # no open redirect


def test_run_web_serves_the_page_from_the_daemon(library: WebLibrary) -> None:
    web = WebServer(library.lib, verb=("run", "--web", "--web-port", "0", "--watch",
                                       str(library.lib.music), "--workers", "1"))
    try:
        status = request(f"{web.url}/api/status")
        assert status.status == 200
        from tests.daemon.daemon_helpers import wait_for

        wait_for(lambda: request(f"{web.url}/api/status").json()["daemon"]["running"], 60,
                 "the daemon to record itself running")
        assert request(f"{web.url}/").status == 200
    finally:
        assert web.stop() == 0, "".join(web.output)
