"""Turn the ``--json`` files of benchmark runs into the Markdown table the README shows.

    python benchmarks/table.py results/*.json > table.md

Prints the machine once (from the first file; a note if the files disagree), then one row
per figure: benchmark, figure, value, unit, target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def render(runs: list[dict[str, Any]]) -> str:
    machine = runs[0]["machine"]
    lines = [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, torch {machine['torch']}, {machine['os']}, "
        f"genred {machine['genred_commit']}.",
    ]
    if any(run["machine"]["cpu"] != machine["cpu"] for run in runs):
        lines.append("(Note: these runs come from more than one machine.)")
    lines += ["", "| benchmark | figure | value | unit | target |", "|---|---|---|---|---|"]
    for run in runs:
        for name, fig in run["results"].items():
            lines.append(f"| {run['bench']} | {name} | {_value(fig['value'])} | "
                         f"{fig['unit']} | {fig['target']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON files written by --json")
    args = parser.parse_args(argv)
    try:
        runs = [json.loads(path.read_text()) for path in args.files]
    except (OSError, json.JSONDecodeError) as e:
        print(f"table: cannot read a result file: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(render(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
