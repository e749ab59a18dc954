"""What every benchmark script shares: arguments, the machine description, the RESULT lines,
an isolated environment for `genred` subprocesses, and a /proc memory sampler.

Figures are printed as ``RESULT <name> = <value> <unit>`` (one per line) so that people and
tests can read them; ``--json FILE`` also writes them with the machine description.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.procmem import TreeMemorySampler

REPO = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """A benchmark could not run (a command failed, a piece of genred is missing)."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """The facts needed to compare figures between machines (printed by every script)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": affinity,
        "cpu": cpu_model(),
        "ram_gib": round(ram_gib(), 1),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "os": f"{platform.system()} {platform.release()}",
        "genred_commit": _git_commit(),
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


@dataclass
class Report:
    """Collects and prints a benchmark's figures."""

    bench: str
    params: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def header(self) -> None:
        print(f"== genred benchmark: {self.bench} ==")
        for key, value in machine().items():
            print(f"machine {key}: {value}")
        print(f"load average at start (1/5/15 min): {load_average()}")
        print("parameters: " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        sys.stdout.flush()

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def result(self, name: str, value: float | str | bool, unit: str = "",
               target: str = "") -> None:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        suffix = f"   (target {target})" if target else ""
        print(f"RESULT {name} = {shown} {unit}{suffix}".rstrip(), flush=True)
        self.results[name] = {"value": value, "unit": unit, "target": target}

    def finish(self, json_path: str | None) -> None:
        print(f"load average at end (1/5/15 min): {load_average()}")
        print(f"benchmark took {time.monotonic() - self.started:.1f} s", flush=True)
        if json_path:
            data = {"bench": self.bench, "params": self.params, "machine": machine(),
                    "results": self.results}
            Path(json_path).write_text(json.dumps(data, indent=2) + "\n")


def base_parser(description: str, default_tracks: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tracks", type=int, default=default_tracks,
                        help=f"how many tracks (default {default_tracks})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny, short inputs: checks the script works, figures mean little")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where generated inputs are kept between runs "
                             "(default $XDG_CACHE_HOME/genred-bench)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--model", default=None,
                        help="model bundle folder or version (default: the bundled one)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the genred commands, e.g. "
                             "GENRED_WORKERS=3 (repeatable): to measure a setting")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (catalogue, logs) and print where it is")
    return parser


def cache_root(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genred-bench"


class Workdir:
    """A temporary folder for catalogues, configs and logs; removed unless ``keep``."""

    def __init__(self, name: str, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"genred-bench-{name}-"))
        self.keep = keep

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"work folder kept: {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def genred_exe() -> str:
    """The `genred` of this Python environment (the venv the script runs in), else PATH's."""
    local = Path(sys.executable).parent / "genred"
    if local.exists():
        return str(local)
    found = shutil.which("genred")
    if found is None:
        raise BenchError("the `genred` command is not installed (pip install -e .)")
    return found


def genred_env(workdir: Path, model: str | None = None, extra: Sequence[str] = (),
               **settings: str) -> dict[str, str]:
    """Environment for `genred` subprocesses: default settings, nothing read from the user's
    own config/data/cache, a fresh catalogue in ``workdir``; ``model`` (a bundle folder)
    sets GENRED_MODEL, ``settings`` add other GENRED_* keys, ``extra`` "KEY=VALUE"s last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENRED_")}
    for sub in ("config", "data", "cache"):
        (workdir / "xdg" / sub).mkdir(parents=True, exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(workdir / "xdg" / "config")
    env["XDG_DATA_HOME"] = str(workdir / "xdg" / "data")
    env["XDG_CACHE_HOME"] = str(workdir / "xdg" / "cache")
    env.pop("STATE_DIRECTORY", None)
    env.pop("CACHE_DIRECTORY", None)
    env["GENRED_DB"] = f"sqlite:///{workdir / 'catalogue.db'}"
    if model:
        env["GENRED_MODEL"] = str(Path(model).resolve()) if Path(model).exists() else model
    for key, value in settings.items():
        env[f"GENRED_{key.upper()}"] = value
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


@dataclass
class GenredRun:
    """One finished `genred` command: wall time, output and (if sampled) peak memory."""

    seconds: float
    stdout: str
    stderr: str
    max_process_rss_kib: int = 0  # largest single process of the tree (wait4 rusage)
    cpu_seconds: float = 0.0  # user + system of the tree (sampled; else wait4's reaped only)
    peak_rss_kib: int = 0  # summed over the tree, sampled from /proc
    peak_pss_kib: int = 0
    max_processes: int = 0


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a command started with ``start_new_session`` and all its workers."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        proc.wait(timeout=10)


def _wait(proc: subprocess.Popen[str], timeout: float) -> tuple[int, Any]:
    """Reap ``proc`` with wait4: (exit code, its resource usage — which includes its own
    reaped children: CPU time summed, maxrss of the largest process)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.01)


def run_genred(args: Sequence[str], env: dict[str, str], timeout: float = 3600,
               sample_memory: bool = False) -> GenredRun:
    """Run `genred ARGS` to completion. Non-zero exit or timeout -> BenchError."""
    cmd = [genred_exe(), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True,
                                start_new_session=True)
        sampler = TreeMemorySampler(proc.pid) if sample_memory else None
        if sampler is not None:
            sampler.start()
        try:
            code, usage = _wait(proc, timeout)
        except subprocess.TimeoutExpired as e:
            kill_group(proc)
            raise BenchError(f"`genred {' '.join(args)}` timed out after {timeout:.0f} s") from e
        except BaseException:
            kill_group(proc)
            raise
        finally:
            if sampler is not None:
                sampler.stop()
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        run = GenredRun(elapsed, out.read(), err.read(), max_process_rss_kib=usage.ru_maxrss,
                        cpu_seconds=usage.ru_utime + usage.ru_stime)
    if sampler is not None:
        run.peak_rss_kib, run.peak_pss_kib = sampler.peak_rss_kib, sampler.peak_pss_kib
        run.cpu_seconds = max(run.cpu_seconds, sampler.cpu_seconds)
        run.max_processes = sampler.max_processes
    if code != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise BenchError(f"`genred {' '.join(args)}` exited {code}: " + " | ".join(tail))
    return run


def catalogue_counts(workdir: Path) -> dict[str, int]:
    """Tracks per status in the benchmark's catalogue (read with the stdlib sqlite3)."""
    import sqlite3

    db = workdir / "catalogue.db"
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM tracks GROUP BY status").fetchall()
    return {status: count for status, count in rows}


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main_guard(run: Any) -> int:
    """Run a benchmark's ``run()``; a BenchError becomes a one-line message and exit 1."""
    try:
        run()
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
