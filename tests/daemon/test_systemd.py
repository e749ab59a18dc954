"""The shipped units pass `systemd-analyze verify` and carry the promised settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "systemd"
SYSTEM_UNIT = UNITS / "genred.service"
USER_UNIT = UNITS / "user" / "genred.service"
ANALYZE = shutil.which("systemd-analyze")
GENRED = Path(sys.executable).parent / "genred"


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _installed_copy(unit: Path, tmp_path: Path, placeholder: str) -> Path:
    """verify fails when ExecStart's binary is absent: point it at this venv's genred."""
    if not GENRED.exists():
        pytest.skip(f"no genred script next to {sys.executable}")
    text = unit.read_text()
    assert placeholder in text
    copy = tmp_path / "genred.service"
    copy.write_text(text.replace(placeholder, str(GENRED)))
    return copy


def _verify(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed here")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_system_unit_passes_verify(tmp_path: Path) -> None:
    copy = _installed_copy(SYSTEM_UNIT, tmp_path, "/opt/genred/bin/genred")
    result = _verify(["verify", "--man=no", str(copy)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_user_unit_passes_verify(tmp_path: Path) -> None:
    copy = _installed_copy(USER_UNIT, tmp_path, "%h/.local/bin/genred")
    result = _verify(["--user", "verify", "--man=no", str(copy)], tmp_path)
    assert result.returncode == 0, result.stderr


def test_system_unit_is_notify_hardened_and_stateful() -> None:
    d = _directives(SYSTEM_UNIT)
    assert d["Type"] == ["notify"] and d["WatchdogSec"] and d["Restart"] == ["on-failure"]
    assert d["StateDirectory"] == ["genred"] and d["CacheDirectory"] == ["genred"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX",
        "SystemCallFilter": "@system-service",
        "MemoryDenyWriteExecute": "no",
    }.items():
        assert d[key] == [value], key
    assert "User" in d or d.get("DynamicUser") == ["yes"]


def test_both_units_reload_with_sighup() -> None:
    for unit in (SYSTEM_UNIT, USER_UNIT):
        assert _directives(unit)["ExecReload"] == ["/bin/kill -HUP $MAINPID"], unit


def test_every_hardening_line_has_a_comment() -> None:
    lines = SYSTEM_UNIT.read_text().splitlines()
    hardening = ("Protect", "Restrict", "NoNewPrivileges", "PrivateTmp", "MemoryDeny",
                 "SystemCallFilter")
    for i, line in enumerate(lines):
        if line.startswith(hardening):
            above = lines[max(0, i - 6):i]
            assert any(a.startswith("#") for a in above), f"no comment near {line}"


def test_music_drop_in_grants_write_access() -> None:
    d = _directives(UNITS / "music-folders.conf.example")
    assert d["ReadWritePaths"]


WORKER_UNIT = UNITS / "genred-worker.service"


def test_worker_unit_passes_verify(tmp_path: Path) -> None:
    copy = _installed_copy(WORKER_UNIT, tmp_path, "/opt/genred/bin/genred")
    result = _verify(["verify", "--man=no", str(copy)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_worker_unit_runs_the_worker_hardened_with_network_access() -> None:
    d = _directives(WORKER_UNIT)
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"]
    assert d["ExecStart"][0].split()[1] == "worker"
    assert "AF_INET" in d["RestrictAddressFamilies"][0].split()  # the catalogue is remote
    assert "StateDirectory" not in d and d["CacheDirectory"] == ["genred"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables"):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"] and d["SystemCallFilter"] == ["@system-service"]
