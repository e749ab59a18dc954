"""Where no PostgreSQL answers, the PostgreSQL half of the catalogue tests skips and says
why; under CI=true it fails instead (CI must run it). Checked by running pytest itself on a
PostgreSQL-parametrised test, pointed at a port where nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "postgresql://postgres@127.0.0.1:9/test"  # the discard port: nothing answers
ONE_PG_TEST = "tests/storage/test_db.py::test_a_catalogue_from_a_newer_genred_is_refused"


def _pytest(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    env["GENRED_TEST_PG"] = NOWHERE
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         f"{ONE_PG_TEST}[postgresql]", f"{ONE_PG_TEST}[sqlite]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_without_postgresql_the_postgresql_half_skips_saying_why_but_fails_under_ci() -> None:
    local = _pytest(ci=None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 passed, 1 skipped" in local.stdout
    assert "SKIPPED" in local.stdout and f"no PostgreSQL at {NOWHERE}" in local.stdout

    ci = _pytest(ci="true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "1 passed, 1 error" in ci.stdout, ci.stdout  # the fixture fails: no skip
    assert "SKIPPED" not in ci.stdout
    assert "CI=true: the PostgreSQL tests must run" in ci.stdout
