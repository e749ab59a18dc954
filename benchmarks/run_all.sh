#!/usr/bin/env bash
# Run every benchmark at its full size, one after the other, keeping each one's output
# (OUT/<name>.txt) and figures (OUT/<name>.json), then write the README table (OUT/table.md).
#   usage: benchmarks/run_all.sh [OUT] [extra options for every script, e.g. --quick]
# A benchmark that fails is reported and the others still run; the exit status is the
# number of failures.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
out=${1:-bench-results}
shift || true
mkdir -p "$out"
fails=0
for name in scan long memory daemon query train backbone workers; do
    echo "== $name ($(date -u +%H:%M:%S) UTC)"
    if "$py" "$here/bench_$name.py" --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1; then
        grep '^RESULT' "$out/$name.txt"
    else
        echo "FAILED: $(tail -1 "$out/$name.txt")"
        fails=$((fails + 1))
    fi
done
jsons=$(ls "$out"/*.json 2>/dev/null)
[[ -n $jsons ]] && "$py" "$here/table.py" $jsons >"$out/table.md" && echo "table: $out/table.md"
exit $fails
