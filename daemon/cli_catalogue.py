"""Verbs: TODO (owned by one helper; see docs/architecture.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add this module's verbs. Each parser sets ``handler=`` (args, cfg) -> exit code and
    names flags that override config keys ``dest="cfg_<key>"`` (default None); heavy imports
    (torch, librosa, sqlalchemy) go inside handlers."""
