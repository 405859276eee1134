#!/usr/bin/env bash
# End to end: the function under cargo-lambda's Lambda runtime emulator, against
# the ECR pull-through cache emulator, invoked with every sample event in
# events/ (in name order: the first one imports). Selectors list their tags
# from the emulator's upstream registries. Stops what it started, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/services.sh

start_emulator --rule docker-hub=registry-1.docker.io --rule ecr-public=public.ecr.aws
# Selectors list Docker Hub's tags from the emulator's upstream registry API
# (WARM_UPSTREAM_ENDPOINTS: REGISTRY=URL, one per registry, separated by commas).
start_function "$(function_env AWS_MAX_ATTEMPTS=1 \
  WARM_RULES=docker-hub=registry-1.docker.io,ecr-public=public.ecr.aws \
  WARM_IMAGES=nginx:1.27,public.ecr.aws/docker/library/redis:7 \
  WARM_UPSTREAM_ENDPOINTS="registry-1.docker.io=$AWS_ENDPOINT_URL/upstream/registry-1.docker.io")"

failed=0
for event in events/*.json; do
  name=$(basename "$event" .json)
  if ! invoke "$event" >"$work/$name.out" 2>"$work/$name.err"; then
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

if name == "check":
    # The first event: the configured list is not cached yet, and a check pulls
    # nothing (direct.json, next, still imports both).
    check(response["summary"]["total"] == 2 and response["summary"]["missing"] == 2,
          "2 images, both missing")
    check([(i["cache_repository"], i["cache"]) for i in response["images"]]
          == [("docker-hub/library/nginx", "missing"), ("ecr-public/docker/library/redis", "missing")],
          "both cache repositories, both missing")
elif name in ("schedule", "direct"):
    summary = response["summary"]
    # direct.json comes before schedule.json, and no event before it warms these
    # two tags (check.json only looks): both are imported.
    status = "imported" if name == "direct" else "unchanged"
    check(summary["total"] == 2 and summary[status] == 2, f"2 images, both {status}")
    check([i["cache_repository"] for i in response["images"]]
          == ["docker-hub/library/nginx", "ecr-public/docker/library/redis"], "both cache repositories")
elif name == "ecs-register-task-definition":
    # A revision registered with two images through the cache and a sidecar that ECS
    # pulls from public.ecr.aws itself: the two are warmed (nginx:1.26 for the first
    # time), the sidecar is reported as not warmed.
    images = [(i["cache_repository"], i["source"], i["status"]) for i in response["images"]]
    check(images[0] == ("docker-hub/library/nginx", "event", "imported")
          and images[1][:2] == ("ecr-public/docker/library/redis", "event")
          and images[1][2] in ("imported", "unchanged") and len(images) == 2,
          "nginx:1.26 imported and redis:7 warm, both from the event")
    check([r["input"] for r in response.get("not_warmed", [])]
          == ["public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1"],
          "the sidecar not warmed")
elif name == "ecs-task-stopped-cannot-pull":
    # Only the container whose pull failed is warmed, so that ECS's next attempt succeeds.
    check([(i["cache_repository"], i["tag"], i["source"], i["status"]) for i in response["images"]]
          == [("docker-hub/library/redis", "7.4", "event", "imported")], "redis:7.4 imported")
elif name == "ecs-deployment-state-change":
    check(set(response) == {"ignored"}, "the event ignored")
elif name == "direct-selector":
    # Selectors, as text and as an object, replaced by the tags they select upstream
    # (1.27.2-alpine is the same image as 1.27.3-alpine: imported or unchanged), then
    # a selector that selects nothing, failed with the newest tags upstream.
    images = response["images"]
    alpine, stable = "nginx:~1.27 match=-alpine$ newest=2", "nginx:~1.26 newest=2"
    check([(i["cache_repository"], i["tag"], i["selector"]) for i in images[:4]]
          == [("docker-hub/library/nginx", "1.27.3-alpine", alpine),
              ("docker-hub/library/nginx", "1.27.2-alpine", alpine),
              ("docker-hub/library/nginx", "1.26.3", stable),
              ("docker-hub/library/nginx", "1.26.2", stable)],
          "nginx 1.27.3-alpine, 1.27.2-alpine, 1.26.3 and 1.26.2, each with its selector")
    check(all(i["status"] in ("imported", "unchanged") for i in images[:4]), "the 4 selected tags warm")
    check(len(images) == 5 and images[4]["selector"] == "nginx:~1.29"
          and images[4]["status"] == "failed" and images[4]["failure_code"] == "NoMatchingTag"
          and "1.28.0" in (images[4]["message"] or ""),
          "nginx:~1.29 failed with NoMatchingTag, naming 1.28.0 among the newest tags")
    check(response["summary"]["total"] == 5 and response["summary"]["failed"] == 1, "5 images, 1 failed")
elif name == "sqs":
    check(response == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]},
          "only the record of the wrong shape to come back")
elif name == "sqs-selector":
    # A selector as a body's text and as an object in {"images": [...]}: no record
    # comes back, and the tags they select (no other event warms them) are in the cache.
    check(response.get("batchItemFailures") == [], "no record to come back")
    import os, boto3
    ecr = boto3.client("ecr", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
    pages = ecr.get_paginator("describe_images").paginate(
        repositoryName="docker-hub/library/nginx")
    tags = {tag for page in pages for image in page["imageDetails"] for tag in image.get("imageTags", [])}
    check({"1.27.3-alpine-slim", "1.27.3"} <= tags,
          f"nginx 1.27.3-alpine-slim and 1.27.3 in the cache (it holds {sorted(tags)})")
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
