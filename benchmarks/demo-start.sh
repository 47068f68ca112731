#!/usr/bin/env bash
# How long `make demo` takes until the dashboard answers, on a fresh clone and on a resume.
#
#   benchmarks/demo-start.sh [PORT]
#
# Clones this checkout into a temporary directory (no .venv, no var/), then:
#   1. `make demo` from nothing: virtualenv, install, model warm-up, every process; the time
#      until http://127.0.0.1:PORT/ serves the dashboard page; then one Ctrl-C (SIGINT).
#   2. `make demo` again: the resume; the same time; Ctrl-C.
# Prints one line per run and each run's exit code (0: a clean stop).
set -euo pipefail
port=${1:-8000}
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wearwatch-demo-start.XXXXXX)
git clone -q "$src" "$dir/repo"
cd "$dir/repo"

run() {
  local label=$1 start end code pid
  start=$(date +%s.%N)
  WEARWATCH_API_PORT=$port setsid make demo >"$dir/$label.log" 2>&1 &
  pid=$!
  while true; do
    code=$(curl -s -o "$dir/page.html" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/" || true)
    if [[ $code == 200 ]] && grep -qi wearwatch "$dir/page.html"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "$label: make demo ended early, see $dir/$label.log"; exit 1; fi
    sleep 0.5
  done
  end=$(date +%s.%N)
  printf '%s: dashboard answered %.1f s after `make demo`\n' "$label" "$(echo "$end - $start" | bc)"
  sleep 10
  kill -INT -- "-$pid"
  wait "$pid" && echo "$label: stopped, exit 0" || echo "$label: exit $?"
}

run fresh
run resume
echo "logs: $dir"
