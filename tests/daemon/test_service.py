"""Start-up failures of the run loop, in process: clear errors, nothing left claimed."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import Config
from daemon.service import Daemon, DaemonError
from daemon.status import running_pid
from storage.db import open_catalogue


def test_a_folder_that_vanishes_before_watching_starts_is_a_clear_error(
    tmp_path: Path,
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    cfg = Config(db=f"sqlite:///{tmp_path / 'catalogue.db'}", watch=(str(music),),
                 model_store=str(tmp_path / "models"))
    engine = open_catalogue(cfg.db_url)
    daemon = Daemon(cfg, engine)
    music.rmdir()
    with pytest.raises(DaemonError, match="cannot watch"):
        daemon.run()
    assert running_pid(engine) is None  # the claim was released
    engine.dispose()
