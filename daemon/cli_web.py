"""Verb: ``web`` — the review page and its JSON API (``daemon.web``).

Examples::

    genred web                                 # http://127.0.0.1:8337/
    genred web --port 9000
    GENRED_WEB_TOKEN=s3cret genred web --host 0.0.0.0   # other hosts need a token
"""

from __future__ import annotations

import argparse

from daemon.config import Config, flag_type


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("web", parents=[common], help="serve the review page (listen, see why, "
                       "correct in one click)",
                       description="Serve the review page, the library and models pages and "
                       "their JSON API. Listens on 127.0.0.1 unless told otherwise; any other "
                       "address needs web_token (or GENRED_WEB_TOKEN). Stop with Ctrl-C.")
    web_flags(p, prefix="")
    p.set_defaults(handler=web_cmd)


def web_flags(p: argparse.ArgumentParser, prefix: str) -> None:
    """--host/--port (``genred web``) or --web-host/--web-port (``genred run --web``)."""
    p.add_argument(f"--{prefix}host", dest="cfg_web_host", default=None, metavar="ADDR",
                   help="address to listen on (config web_host, default 127.0.0.1)")
    p.add_argument(f"--{prefix}port", dest="cfg_web_port", type=flag_type("web_port"),
                   default=None,
                   metavar="PORT", help="TCP port (config web_port, default 8337; 0: any free)")


def web_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from daemon.web.server import serve

    return serve(cfg)
