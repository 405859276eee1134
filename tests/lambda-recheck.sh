#!/usr/bin/env bash
# End to end: the function's next tries of images whose layers are still pending,
# under cargo-lambda's Lambda runtime emulator, against the ECR emulator and the
# SQS queue moto serves beside it. A pending image goes back on the queue with a
# delay (`retrying`), warm when the message comes back; one still pending after
# its last try ends failed with LayersNotCached. Stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/services.sh

# pause:3.10's layer arrives 4 s after it is first asked for; one layer of
# nginx:1.26 never does.
cat >"$work/emulator.json" <<JSON
{
  "catalog": "$PWD/emulator/catalog.json",
  "rules": [
    {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
    {"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "registry.k8s.io"}
  ],
  "pending_layers": {
    "sha256:77d2584dcde962d9449e2bde29eb09e1258cd36ad8f1f6f02d6ef07d7b88a264": {"seconds": 4},
    "sha256:cccfbc94c5864cc53a31f85d99269eba2fdd698490e3db84597f78f1cef539dd": {"requests": 1000000}
  }
}
JSON
start_emulator --config "$work/emulator.json"
queue_url=$(python3 - <<'PY'
import boto3
print(boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="warm")["QueueUrl"])
PY
)
start_function "$(function_env AWS_MAX_ATTEMPTS=1 \
  WARM_RULES=docker-hub=registry-1.docker.io,k8s=registry.k8s.io \
  WARM_QUEUE_URL="$queue_url" WARM_LAYER_WAIT=1s WARM_RECHECK_DELAY=1s WARM_RECHECK_ATTEMPTS=2)"

# receive_as_event FILE: waits for one message on the queue and writes it as an
# SQS event; fails when none comes.
receive_as_event() {
  QUEUE_URL="$queue_url" python3 - "$1" <<'PY'
import json, os, sys, boto3
sqs = boto3.client("sqs", region_name="us-east-1")
answer = sqs.receive_message(QueueUrl=os.environ["QUEUE_URL"], WaitTimeSeconds=5, MaxNumberOfMessages=10)
messages = answer.get("Messages", [])
if len(messages) != 1:
    sys.exit(f"expected one message on the queue, got {messages}")
message = messages[0]
sqs.delete_message(QueueUrl=os.environ["QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
          "body": message["Body"], "attributes": {}, "messageAttributes": {},
          "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:warm", "awsRegion": "us-east-1"}
json.dump({"Records": [record]}, open(sys.argv[1], "w"))
print(message["Body"])
PY
}

queue_is_empty() {
  QUEUE_URL="$queue_url" python3 - <<'PY'
import os, sys, boto3
answer = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=os.environ["QUEUE_URL"], WaitTimeSeconds=2)
sys.exit(f"expected an empty queue, got {answer.get('Messages')}" if answer.get("Messages") else 0)
PY
}

check() {
  python3 - "$@" <<'PY'
import json, sys
path, expression, what = sys.argv[1:4]
response = json.load(open(path))
if not eval(expression, {"r": response}):
    sys.exit(f"expected {what}, got {json.dumps(response)}")
PY
}

echo '{"images": ["registry.k8s.io/pause:3.10"]}' >"$work/direct.json"
invoke "$work/direct.json" >"$work/direct.out"
check "$work/direct.out" 'r["images"][0]["status"] == "retrying" and r["images"][0]["retry"]["attempt"] == 2 and r["summary"]["retrying"] == 1' \
  "pause:3.10 pending, so retrying through the queue"
echo "ok   a pending image is sent to the queue"

body=$(receive_as_event "$work/recheck-1.json")
[ "$body" = '{"images":["registry.k8s.io/pause:3.10"],"recheck":1}' ] || { echo "FAIL unexpected body $body" >&2; exit 1; }
sleep 3
invoke "$work/recheck-1.json" >"$work/recheck-1.out"
check "$work/recheck-1.out" 'r == {"batchItemFailures": []}' "the message done"
queue_is_empty
grep -q '"Unchanged":1' "$work/watch.log" || { echo "FAIL the re-check did not find the image warm" >&2; tail -30 "$work/watch.log" >&2; exit 1; }
echo "ok   its re-check finds it warm and sends nothing more"

echo '{"images": ["nginx:1.26"]}' >"$work/stuck.json"
invoke "$work/stuck.json" >"$work/stuck.out"
check "$work/stuck.out" 'r["images"][0]["status"] == "retrying" and r["images"][0]["failure_code"] is None' "nginx:1.26 pending, so retrying"
receive_as_event "$work/stuck-1.json" >/dev/null
invoke "$work/stuck-1.json" >/dev/null
body=$(receive_as_event "$work/stuck-2.json")
[ "$body" = '{"images":["nginx:1.26"],"recheck":2}' ] || { echo "FAIL unexpected body $body" >&2; exit 1; }
invoke "$work/stuck-2.json" >"$work/stuck-2.out"
check "$work/stuck-2.out" 'r == {"batchItemFailures": []}' "the last re-check to end the message"
queue_is_empty
grep -q "LayersNotCached" "$work/watch.log" || { echo "FAIL no LayersNotCached in the function's log" >&2; tail -30 "$work/watch.log" >&2; exit 1; }
echo "ok   an image still pending after its last try fails with LayersNotCached"
echo "lambda-recheck: 3 passed"
