#!/usr/bin/env bash
# The warmer's main job on this machine, without an AWS account: an ECR emulator
# with pull-through cache rules, two warms of a list, then the Lambda function
# under cargo-lambda's runtime emulator. Stops everything it started, also when
# interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/services.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building ecr-cache-warmer"
cargo build --quiet
bin="$(cargo_target_dir)/debug/ecr-cache-warmer"

step "Starting an ECR emulator with pull-through cache rules for Docker Hub, ECR Public, Quay and registry.k8s.io"
start_emulator --config emulator/demo.json
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
start_function "$(function_env \
  WARM_IMAGES=nginx:1.27,public.ecr.aws/docker/library/redis:7,registry.k8s.io/pause:3.10)"
invoke events/schedule.json >"$work/schedule.out"
python3 -m json.tool "$work/schedule.out"
python3 - "$work/schedule.out" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]
sys.exit(0 if summary["unchanged"] == 3 else f"demo: expected 3 unchanged images, got {summary}")
PY

step "Done: everything started by the demo is being stopped"
