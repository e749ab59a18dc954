"""The `genred` entry point itself: fast help, usage errors, a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GENRED = Path(sys.executable).with_name("genred")
HEAVY = ("torch", "librosa", "sqlalchemy", "numba")


def test_help_lists_every_verb_without_importing_heavy_packages() -> None:
    probe = (
        "import sys; from daemon.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    for verb in ("classify", "train", "evaluate", "scan", "query", "correct", "tags", "run",
                 "status", "retrain", "models", "config"):
        assert verb in out.stdout
    assert "HEAVY []" in out.stdout


def test_no_verb_prints_help_and_exits_2() -> None:
    result = subprocess.run([str(GENRED)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: genred" in result.stdout


def test_a_bad_config_key_is_named_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("settle_secnds = 3\n")
    result = subprocess.run([str(GENRED), "--config", str(config), "config", "show"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "settle_secnds" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not GENRED.exists(), reason="genred is not installed in this venv")
def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    env_home = tmp_path / "home"
    script = f"'{GENRED}' config show --format json | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}"
    # Make the output long enough to overflow the pipe: many aliases in the config.
    config = tmp_path / "config.toml"
    config.write_text("[aliases]\n" + "".join(f'"alias {i}" = "Jazz"\n' for i in range(20000)))
    result = subprocess.run(
        ["bash", "-c", script.replace("config show", f"--config '{config}' config show")],
        capture_output=True, text=True, env={"HOME": str(env_home), "PATH": "/usr/bin:/bin"},
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 0
