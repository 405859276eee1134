#!/usr/bin/env bash
# The soak of the fan-out (`make soak`; see README, Performance): 10,000 images from a
# schedule, fanned out to the queue and warmed by the function under cargo-lambda, fed
# by an event source mapping over the emulator's SQS, against the ECR emulator with
# throttling and upstream outages; one invocation runs into its deadline and one
# instance is killed mid-batch. scripts/soak.py does the work and writes
# soak-results.json; this starts and stops the processes around it.
# SOAK_TIMEOUT: the function's timeout in seconds (default 20; the queue's visibility
# timeout is six times it, as in template.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/services.sh
timeout_s=${SOAK_TIMEOUT:-20}

# The logs are kept in soak-logs/ (stop_services removes $work).
keep_logs() {
  rm -rf soak-logs
  mkdir soak-logs
  cp "$work"/*.log soak-logs/
  echo "the logs of the emulator, cargo-lambda and each instance are in soak-logs/"
}

echo "Building the function"
cargo build --quiet
bin="$(cargo_target_dir)/debug/ecr-cache-warmer"

python3 scripts/soak.py prepare "$work" --timeout "$timeout_s"

echo "Starting the ECR emulator (with its SQS) on the generated catalog"
port=$(free_port)
setsid python3 scripts/soak.py emulator "$work/emulator.json" "$port" >"$work/emulator.log" 2>&1 &
started_pids+=($!)
wait_for_port "$port" "the ECR emulator" 60 "$!" || { cat "$work/emulator.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

# cargo-lambda serves the invoke endpoint and the runtime API; soak.py starts the 4
# instances on it (see the top of soak.py for why). Not --concurrency 4: with it,
# cargo-lambda 1.9 starts instances of its own even with --only-lambda-apis.
echo "Starting cargo lambda watch --only-lambda-apis"
lambda_port=$(free_port)
setsid cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$lambda_port" >"$work/watch.log" 2>&1 &
started_pids+=($!)
wait_for_port "$lambda_port" "cargo lambda watch" 60 "$!" || { cat "$work/watch.log" >&2; exit 1; }

status=0
python3 scripts/soak.py run --work "$work" --binary "$bin" --lambda-port "$lambda_port" \
  --timeout "$timeout_s" --concurrency 4 --results soak-results.json || status=$?
keep_logs
exit "$status"
