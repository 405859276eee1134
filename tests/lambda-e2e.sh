#!/usr/bin/env bash
# End to end: the function under cargo-lambda's Lambda runtime emulator, against
# the ECR pull-through cache emulator, invoked with every sample event in
# events/ (in name order: the first one imports). Stops what it started, also
# on failure.
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
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
  local port=$1 what=$2 seconds=$3 pid=$4
  for _ in $(seq "$((seconds * 10))"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "lambda-e2e: $what exited before it listened on port $port" >&2
      return 1
    fi
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "lambda-e2e: $what did not listen on port $port within ${seconds}s" >&2
  return 1
}

emulator_port=$(free_port)
setsid python3 emulator/ecr_emulator.py --port "$emulator_port" \
  --rule docker-hub=registry-1.docker.io --rule ecr-public=public.ecr.aws >"$work/emulator.log" 2>&1 &
pids+=($!)
wait_for_port "$emulator_port" "the ECR emulator" 30 "$!" || { cat "$work/emulator.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$emulator_port"

cat >"$work/function.env" <<ENV
AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL"
AWS_REGION="us-east-1"
AWS_ACCESS_KEY_ID="test"
AWS_SECRET_ACCESS_KEY="test"
AWS_MAX_ATTEMPTS="1"
WARM_RULES="docker-hub=registry-1.docker.io,ecr-public=public.ecr.aws"
WARM_IMAGES="nginx:1.27,public.ecr.aws/docker/library/redis:7"
ENV

lambda_port=$(free_port)
setsid cargo lambda watch -A 127.0.0.1 -P "$lambda_port" --env-file "$work/function.env" \
  >"$work/watch.log" 2>&1 &
pids+=($!)
wait_for_port "$lambda_port" "cargo lambda watch" 300 "$!" || { cat "$work/watch.log" >&2; exit 1; }

failed=0
for event in events/*.json; do
  name=$(basename "$event" .json)
  if ! cargo lambda invoke ecr-cache-warmer -A 127.0.0.1 -P "$lambda_port" \
      --data-file "$event" >"$work/$name.out" 2>"$work/$name.err"; then
    echo "FAIL $name: the invocation failed" >&2
    cat "$work/$name.err" "$work/$name.out" >&2
    failed=$((failed + 1))
    continue
  fi
  if python3 - "$name" "$work/$name.out" <<'PY'
import json, sys

name, path = sys.argv[1], sys.argv[2]
response = json.load(open(path))

def check(condition, what):
    if not condition:
        sys.exit(f"{name}: expected {what}, got {json.dumps(response)}")

if name in ("schedule", "direct"):
    summary = response["summary"]
    # direct.json comes first: the cache is empty, so both images are imported.
    status = "imported" if name == "direct" else "unchanged"
    check(summary["total"] == 2 and summary[status] == 2, f"2 images, both {status}")
    check([i["cache_repository"] for i in response["images"]]
          == ["docker-hub/library/nginx", "ecr-public/docker/library/redis"], "both cache repositories")
elif name == "sqs":
    check(response == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]},
          "only the record of the wrong shape to come back")
else:
    sys.exit(f"{name}: no expectation written for this event")
PY
  then
    echo "ok   $name"
  else
    failed=$((failed + 1))
  fi
done

total=$(ls events/*.json | wc -l)
echo "lambda-e2e: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "--- cargo lambda watch log" >&2; tail -50 "$work/watch.log" >&2; exit 1; }
