"""The web tests' server: one `genred web` process per test module, over the module's own
``library`` fixture (each module builds the library its pages need)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon.web.webkit import WebLibrary, WebServer


@pytest.fixture(scope="module")
def server(library: WebLibrary) -> Iterator[str]:
    web = WebServer(library.lib)
    yield web.url
    assert web.stop() == 0, "".join(web.output)
