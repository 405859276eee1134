#!/usr/bin/env bash
# The warmer's main job on this machine, without an AWS account: an ECR emulator
# with pull-through cache rules, the registry checks of doctor, the plan of a
# list whose selector is resolved by listing tags on the emulator's upstream
# registry API, two warms of that list, then the Lambda function under
# cargo-lambda's runtime emulator. Stops everything it started, also when
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
# Selectors list their tags on the upstream registry: here the emulator's Docker Hub.
docker_hub="$AWS_ENDPOINT_URL/upstream/registry-1.docker.io"
upstream=(--upstream-endpoint "registry-1.docker.io=$docker_hub")
echo "Docker Hub's registry API (tags of selectors) at $docker_hub"

step "The list (emulator/demo-images.txt)"
cat emulator/demo-images.txt

step "doctor: what in the registry's setup would make a first pull fail, before anything is pulled"
echo "(the emulator's registry policy allows the cache only under ecr-public/docker/: one warning)"
set +e
"$bin" doctor -f emulator/demo-images.txt "${upstream[@]}" | tee "$work/doctor.txt"
doctor=${PIPESTATUS[0]}
set -e
[ "$doctor" -eq 0 ] || { echo "demo: doctor found errors (exit $doctor)" >&2; exit 1; }
grep -q " 1 warning, 0 errors" "$work/doctor.txt" || { echo "demo: doctor did not find exactly one warning" >&2; exit 1; }

step "plan --resolve: where each image will be pulled through (rules read from the emulator)"
echo "(the selector nginx:~1.27 match=-alpine\$ newest=2 lists nginx's tags upstream: the two newest 1.27.x -alpine)"
"$bin" plan --resolve -f emulator/demo-images.txt "${upstream[@]}" | tee "$work/plan.txt"
for tag in 1.27.3-alpine 1.27.2-alpine; do
  grep -qF "nginx:$tag (selected by nginx:~1.27 match=-alpine\$ newest=2) " "$work/plan.txt" \
    || { echo "demo: plan --resolve did not select nginx:$tag" >&2; exit 1; }
done

step "First warm: the cache is empty, so ECR imports each image from upstream, every platform and every layer"
echo "(registry.k8s.io/pause:3.10's layer stays on the upstream for 5 s in this emulator; the warm waits 2 s for it)"
set +e
"$bin" warm -f emulator/demo-images.txt "${upstream[@]}" --layer-wait 2s | tee "$work/first.txt"
first=${PIPESTATUS[0]}
started=$SECONDS

step "nginx:1.27 is multi-arch: both platforms, each with every blob on ECR's layer storage"
"$bin" warm nginx:1.27 --output json >"$work/nginx.json"
python3 - "$work/nginx.json" <<'PY'
import json, sys
image = json.load(open(sys.argv[1]))["images"][0]
for platform in image["platforms"]:
    layers = platform["layers"]
    print(f"  {platform['platform']:16} {platform['status']:10} {layers['cached']}/{layers['total']} blobs cached")
warm = len(image["platforms"]) == 2 and all(p["layers"]["cached"] == p["layers"]["total"] for p in image["platforms"])
sys.exit(0 if warm else "demo: nginx:1.27 is not warm on both platforms")
PY
[ $? -eq 0 ] || exit 1

sleep $(( started + 4 - SECONDS > 0 ? started + 4 - SECONDS : 0 ))
step "Second warm, a few seconds later: the pending layer has arrived, everything is cached and unchanged"
"$bin" warm -f emulator/demo-images.txt "${upstream[@]}" | tee "$work/second.txt"
second=${PIPESTATUS[0]}
set -e
[ "$first" -eq 1 ] && [ "$second" -eq 1 ] || { echo "demo: expected exit code 1 (the broken entry), got $first and $second" >&2; exit 1; }
grep -q "6 imported, 0 refreshed, 0 unchanged, 1 pending, 1 failed" "$work/first.txt" || { echo "demo: the first warm did not import 6 images and leave pause pending" >&2; exit 1; }
for tag in 1.27.3-alpine 1.27.2-alpine; do
  grep -Eq "^nginx:$tag( \(selected by nginx:~1\.27 match=-alpine\\\$ newest=2\))? +imported " "$work/first.txt" \
    || { echo "demo: the first warm did not import nginx:$tag, selected by the selector" >&2; exit 1; }
done
grep -q "registry.k8s.io/pause:3.10 pending" "$work/first.txt" || { echo "demo: pause:3.10 was not pending on the first warm" >&2; exit 1; }
grep -q "7 unchanged, 0 pending, 1 failed" "$work/second.txt" || { echo "demo: the second warm did not find the 7 images warm" >&2; exit 1; }

step "The Lambda function under cargo lambda watch, invoked with events/schedule.json"
echo "(with WARM_DOCTOR=true it runs the registry checks at start and logs the warning)"
start_function "$(function_env \
  WARM_IMAGES=nginx:1.27,public.ecr.aws/docker/library/redis:7,registry.k8s.io/pause:3.10 \
  WARM_DOCTOR=true)"
invoke events/schedule.json >"$work/schedule.out"
python3 -m json.tool "$work/schedule.out"
python3 - "$work/schedule.out" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]
sys.exit(0 if summary["unchanged"] == 3 else f"demo: expected 3 unchanged images, got {summary}")
PY
echo "The function's log at start:"
grep -E "registry checks|registry permissions policy" "$work/watch.log" | cut -c1-400 \
  || { echo "demo: the function did not log its registry checks" >&2; exit 1; }

step "Done: everything started by the demo is being stopped"
