#!/bin/bash
# W2 against raw pyzmq in the same run, with the bench service served four ways:
# plain, with one no-op middleware (the pipeline's own cost), --metrics-bind, and --metrics-bind --otel
# with a recording SDK (traced_bench_service).
# Usage: bash scripts/observability/bench_instrumented.sh [REPEAT]   (from the repository root)
set -euo pipefail
REPEAT=${1:-3}
PY=${PY:-.venv/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d)
trap 'kill $(cat "$OUT"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$OUT"' EXIT

$PY -m zmsg.bench.raw --bind tcp://127.0.0.1:0 > "$OUT/raw.log" 2>&1 & echo $! > "$OUT/raw.pid"
until grep -q "serving on" "$OUT/raw.log"; do sleep 0.2; done
RAW=$(grep -o "serving on [^ ]*" "$OUT/raw.log" | cut -d' ' -f3)

run() {  # NAME TARGET ARGS...
  local name=$1 target=$2; shift 2
  (cd "$HERE" && exec "$OLDPWD/$PY" -m zmsg serve "$target" --bind tcp://127.0.0.1:0 --log-level warning "$@") \
    > "$OUT/$name.log" 2>&1 & echo $! > "$OUT/$name.pid"
  until grep -q "serving '" "$OUT/$name.log"; do sleep 0.2; done
  local ep
  ep=$(grep -o "on tcp://[^ ]*" "$OUT/$name.log" | head -1 | cut -d' ' -f2)
  echo "== $name: zmsg serve $target $*"
  $PY -m zmsg bench -w W2 --repeat "$REPEAT" --endpoint "$ep" --raw-endpoint "$RAW" 2>/dev/null | tail -3
  kill "$(cat "$OUT/$name.pid")"; rm "$OUT/$name.pid"
}

run plain zmsg.bench.service:service
run noop_middleware noop_middleware_service:service
run metrics zmsg.bench.service:service --metrics-bind 127.0.0.1:0
run metrics_otel traced_bench_service:service --metrics-bind 127.0.0.1:0 --otel
