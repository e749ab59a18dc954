"""The security checks' rules, one by one (the processes in test_security.py show them
working end to end)."""

from __future__ import annotations

import pytest

from daemon.config import ConfigError
from daemon.web.security import (
    COOKIE,
    check_bind,
    is_loopback,
    same_origin,
    session_value,
    token_ok,
)

SCOPE = {"scheme": "http"}
OWN = {"host": "127.0.0.1:8337"}


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("app.localhost", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.5", False), ("example.com", False), ("localhost.example.com", False),
])
def test_only_the_loopback_counts_as_local(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_local_bind_needs_a_token() -> None:
    check_bind("127.0.0.1", "")
    check_bind("0.0.0.0", "secret")
    with pytest.raises(ConfigError, match="web_token"):
        check_bind("0.0.0.0", "")


@pytest.mark.parametrize("headers, allowed", [
    ({}, True),  # curl: no page behind it
    ({"origin": "http://127.0.0.1:8337"}, True),
    ({"origin": "http://127.0.0.1:8338"}, False),
    ({"origin": "https://127.0.0.1:8337"}, False),
    ({"origin": "null"}, False),
    ({"referer": "http://127.0.0.1:8337/library"}, True),
    ({"referer": "http://evil.example/"}, False),
    ({"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8337"}, True),
    ({"sec-fetch-site": "same-site"}, False),
    ({"sec-fetch-site": "cross-site", "origin": "http://127.0.0.1:8337"}, False),
    ({"sec-fetch-site": "none"}, True),  # typed in the address bar
])
def test_state_changes_must_come_from_this_origin(headers: dict[str, str],
                                                  allowed: bool) -> None:
    assert same_origin(SCOPE, {**OWN, **headers}) is allowed


def test_the_token_comes_as_bearer_or_as_the_login_cookie() -> None:
    assert token_ok("s3cret", {"authorization": "Bearer s3cret"})
    assert token_ok("s3cret", {"authorization": "bearer  s3cret "})
    assert not token_ok("s3cret", {"authorization": "Bearer s3cre"})
    assert not token_ok("s3cret", {"authorization": "Basic s3cret"})
    assert token_ok("s3cret", {"cookie": f"other=1; {COOKIE}={session_value('s3cret')}"})
    assert not token_ok("s3cret", {"cookie": f"{COOKIE}=s3cret"})  # not the token itself
    assert not token_ok("s3cret", {"cookie": f"{COOKIE}={session_value('other')}"})
    assert not token_ok("s3cret", {"cookie": "\x00garbage;;=="})
    assert session_value("s3cret") != session_value("other")
