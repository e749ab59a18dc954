"""Run the web app with uvicorn: in the foreground (``genred web``) or in a thread of the
daemon (``genred run --web``)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from daemon.config import Config
from daemon.web.security import check_bind

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """Says where it listens once the socket is bound (port 0 picks a free one)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.url: str | None = None
        self.ready = threading.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM / SIGINT stop the server and `genred web` exits 0 (uvicorn's own handler
        re-raises the signal after shutdown, so the exit status would say "killed")."""
        if threading.current_thread() is not threading.main_thread():
            yield  # inside `genred run --web`: the daemon owns the signals
            return
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: Any) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: do not wait for open connections
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        sock = self.servers[0].sockets[0] if self.servers and self.servers[0].sockets else None
        host, port = (sock.getsockname()[:2] if sock else (self.config.host, self.config.port))
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}/"
        print(f"genred web: serving {self.url}", flush=True)
        self.ready.set()


def build(cfg: Config) -> _Server:
    """The server for ``cfg.web_host``:``cfg.web_port``; ConfigError when the address is
    not loopback and no token is set."""
    from daemon.web.app import create_app

    check_bind(cfg.web_host, cfg.web_token)
    app = create_app(cfg, host=cfg.web_host)
    config = uvicorn.Config(app, host=cfg.web_host, port=cfg.web_port, log_config=None,
                            access_log=False, lifespan="off", server_header=False,
                            timeout_graceful_shutdown=5)
    return _Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for uvicorn to serve on. Raises ConfigError
    saying why it cannot be bound (the port in use, an address not on this host), so the
    failure is genred's one line, not uvicorn's log line and exit status."""
    from daemon.config import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"the web page cannot listen on {host}:{port}: {e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = ("; another program listens there: choose another port (--port, web_port)"
                if e.errno in (98, 48) else "")  # EADDRINUSE on Linux, BSD
        raise ConfigError(f"the web page cannot listen on {host}:{port}: "
                          f"{e.strerror or e}{hint}") from e
    sock.set_inheritable(True)
    return sock


def serve(cfg: Config) -> int:
    """Serve until SIGINT/SIGTERM; the exit code. ConfigError when the address cannot be
    bound."""
    server = build(cfg)
    sock = listen(cfg.web_host, cfg.web_port)
    server.run(sockets=[sock])
    if server.url is None:  # uvicorn could not start on the socket; it logged why
        print(f"genred web: cannot listen on {cfg.web_host}:{cfg.web_port}", file=sys.stderr)
        return 1
    return 0


class Background:
    """The web server in a daemon thread (``genred run --web``)."""

    def __init__(self, cfg: Config) -> None:
        self.server = build(cfg)
        self.socket = listen(cfg.web_host, cfg.web_port)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="genred-web", daemon=True)

    def start(self) -> None:
        """Returns once the socket listens; ConfigError when it cannot be bound."""
        from daemon.config import ConfigError

        self.thread.start()
        while not self.server.ready.wait(0.1):
            if not self.thread.is_alive():
                cfg = self.server.config
                raise ConfigError(f"the web page cannot listen on {cfg.host}:{cfg.port}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
