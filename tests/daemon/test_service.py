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


@pytest.mark.parametrize("value", ["nan", "0", "-1", "1e9"])
def test_a_busy_timeout_out_of_range_is_refused_naming_the_key(value: str) -> None:
    from daemon.config import ConfigError, load

    with pytest.raises(ConfigError, match="GENRED_BUSY_TIMEOUT_SECONDS: must be a number"):
        load(None, environ={"GENRED_BUSY_TIMEOUT_SECONDS": value})


def test_the_busy_timeout_is_what_a_write_waits_for_a_real_lock(tmp_path: Path) -> None:
    import sqlite3
    import time

    from sqlalchemy.exc import OperationalError

    from daemon.faults import describe
    from storage.catalogue import set_state

    db = tmp_path / "catalogue.db"
    engine = open_catalogue(f"sqlite:///{db}", busy_timeout=0.3)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        start = time.monotonic()
        with pytest.raises(OperationalError) as caught:
            set_state(engine, "k", "v")
        assert time.monotonic() - start >= 0.3  # it waited, then gave up
        fault = describe(caught.value, db, 0.3)
        assert fault.kind == "catalogue locked" and "(0.3 s)" in fault.what
    finally:
        holder.rollback()
        holder.close()
    set_state(engine, "k", "v")  # the lock is gone: writes work again
    engine.dispose()
