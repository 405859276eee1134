#!/usr/bin/env bash
# The warmer's main job on this machine, without an AWS account: an ECR emulator
# with pull-through cache rules, two warms of a list, then the Lambda function
# under cargo-lambda's runtime emulator. Stops everything it started, also when
# interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
  local port=$1 what=$2 seconds=$3 pid=$4
  for _ in $(seq "$((seconds * 10))"); do
    kill -0 "$pid" 2>/dev/null || { echo "demo: $what stopped before it listened" >&2; return 1; }
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $what did not listen on port $port within ${seconds}s" >&2
  return 1
}

step "Building ecr-cache-warmer"
cargo build --quiet
bin=target/debug/ecr-cache-warmer

step "Starting an ECR emulator with pull-through cache rules for Docker Hub, ECR Public, Quay and registry.k8s.io"
port=$(free_port)
cp emulator/catalog.json "$work/catalog.json"
sed 's|"catalog.json"|"'"$work"'/catalog.json"|' emulator/demo.json >"$work/demo.json"
setsid python3 emulator/ecr_emulator.py --port "$port" --config "$work/demo.json" >"$work/emulator.log" 2>&1 &
pids+=($!)
wait_for_port "$port" "the ECR emulator" 30 "$!" || { cat "$work/emulator.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
echo "listening on $AWS_ENDPOINT_URL"

step "The list (emulator/demo-images.txt)"
cat emulator/demo-images.txt

step "plan: where each image will be pulled through (rules read from the emulator)"
"$bin" plan -f emulator/demo-images.txt

step "First warm: the cache is empty, so ECR imports each image from upstream"
set +e
"$bin" warm -f emulator/demo-images.txt | tee "$work/first.txt"
first=${PIPESTATUS[0]}
step "Second warm: everything is cached and unchanged upstream"
"$bin" warm -f emulator/demo-images.txt | tee "$work/second.txt"
second=${PIPESTATUS[0]}
set -e
[ "$first" -eq 1 ] && [ "$second" -eq 1 ] || { echo "demo: expected exit code 1 (the broken entry), got $first and $second" >&2; exit 1; }
grep -q "5 imported" "$work/first.txt" || { echo "demo: the first warm did not import the 5 images" >&2; exit 1; }
grep -q "5 unchanged" "$work/second.txt" || { echo "demo: the second warm did not find the 5 images unchanged" >&2; exit 1; }

step "The Lambda function under cargo lambda watch, invoked with events/schedule.json"
cat >"$work/function.env" <<ENV
AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL"
AWS_REGION="us-east-1"
AWS_ACCESS_KEY_ID="demo"
AWS_SECRET_ACCESS_KEY="demo"
WARM_IMAGES="nginx:1.27,public.ecr.aws/docker/library/redis:7,registry.k8s.io/pause:3.10"
ENV
lambda_port=$(free_port)
setsid cargo lambda watch -A 127.0.0.1 -P "$lambda_port" --env-file "$work/function.env" \
  >"$work/watch.log" 2>&1 &
pids+=($!)
wait_for_port "$lambda_port" "cargo lambda watch" 300 "$!" || { cat "$work/watch.log" >&2; exit 1; }
cargo lambda invoke ecr-cache-warmer -A 127.0.0.1 -P "$lambda_port" \
  --data-file events/schedule.json >"$work/schedule.out"
python3 -m json.tool "$work/schedule.out"
python3 - "$work/schedule.out" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]
sys.exit(0 if summary["unchanged"] == 3 else f"demo: expected 3 unchanged images, got {summary}")
PY

step "Done: everything started by the demo is being stopped"
