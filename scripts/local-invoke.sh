#!/usr/bin/env bash
# `make local-invoke`: the function in its Lambda container, as README "Run it locally
# with `sam local invoke`" describes, against the ECR emulator. `sam build` for this
# machine's processor, a Docker daemon of its own when none answers, the emulator on the
# Docker bridge's address (where the container reaches the host), then `sam local invoke`
# with the schedule, direct and SQS sample events, each answer checked: SAM exits 0 also
# when the function gave none. Stops everything it started, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
source scripts/services.sh
sam=.venv/sam/bin/sam
export SAM_CLI_TELEMETRY=0
started=$SECONDS

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# What this script leaves to undo, beyond the processes of services.sh.
dockerd_pid=""
containerd_pidfile=""
created_bridge=false
stand_in_images=()

stop_local() {
  if [ ${#stand_in_images[@]} -gt 0 ] && [ -z "$dockerd_pid" ]; then
    # Never leave a stand-in under the official name in a daemon that outlives us
    docker rmi -f "${stand_in_images[@]}" >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    local ids
    ids=$(docker ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    local containerd_pid=""
    [ -f "$containerd_pidfile" ] && containerd_pid=$(cat "$containerd_pidfile")
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    if [ -n "$containerd_pid" ] && kill -0 "$containerd_pid" 2>/dev/null; then
      kill "$containerd_pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$containerd_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    # Whatever the daemon left mounted under its folders, before they are removed
    awk -v dir="$work/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l || true
  fi
  if $created_bridge && ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0 || true
  fi
}
trap 'stop_local; stop_services' EXIT

case "$(uname -m)" in
  x86_64 | amd64) architecture=x86_64 ;;
  aarch64 | arm64) architecture=arm64 ;;
  *) echo "local-invoke: Lambda has no $(uname -m) processor" >&2; exit 1 ;;
esac

step "Building the package for $architecture with sam build (a debug build: quicker than the deployed release build)"
# A debug build (minutes, where the size-optimized release build takes about eight on two
# cores), without debug info (quicker still, and a tenth of the size), into a folder of its
# own: .aws-sam/build, which `sam deploy` uploads, keeps the deployment package.
build_dir="$work/build"
SAM_BUILD_MODE=debug CARGO_PROFILE_DEV_DEBUG=false "$sam" build --beta-features --build-dir "$build_dir" \
  --parameter-overrides "Architecture=$architecture" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; echo "local-invoke: sam build failed" >&2; exit 1; }
bootstrap="$build_dir/WarmerFunction/bootstrap"
echo "built $bootstrap ($(du -h "$bootstrap" | cut -f1)) in $((SECONDS - started))s"

step "Docker"
if docker info >/dev/null 2>&1; then
  echo "using the Docker daemon that answers at ${DOCKER_HOST:-the default socket}"
else
  missing=()
  command -v dockerd >/dev/null && command -v docker >/dev/null || missing+=(docker.io)
  command -v ip >/dev/null || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian's ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ "$(id -u)" -eq 0 ] || { echo "local-invoke: no Docker daemon answers, and starting one needs root" >&2; exit 1; }
  ip link show docker0 >/dev/null 2>&1 || created_bridge=true
  # A daemon of its own: its own folders and socket, and the host's network left as it
  # is (no iptables rules, no forwarding). Containers reach the host on the bridge.
  mkdir -p "$work/docker"
  containerd_pidfile="$work/docker/exec/containerd/containerd.pid"
  setsid dockerd --iptables=false --ip-forward=false --ip-masq=false --storage-driver=overlay2 \
    --data-root "$work/docker/data" --exec-root "$work/docker/exec" --pidfile "$work/docker/dockerd.pid" \
    --host "unix://$work/docker/docker.sock" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker/docker.sock"
  for _ in $(seq 300); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { cat "$work/dockerd.log" >&2; echo "local-invoke: dockerd stopped" >&2; exit 1; }
    sleep 0.1
  done
  docker info >/dev/null 2>&1 || { cat "$work/dockerd.log" >&2; echo "local-invoke: dockerd did not answer in 30s" >&2; exit 1; }
  echo "started dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,) with its own folders and socket ($DOCKER_HOST)"
fi
# The host's address on the bridge: the network's gateway, or (dockerd 20.10 leaves the
# gateway out of its default bridge) the bridge device's own address.
bridge=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
if [ -z "$bridge" ]; then
  device=$(docker network inspect bridge --format '{{index .Options "com.docker.network.bridge.name"}}')
  bridge=$(ip -4 -o addr show dev "${device:-docker0}" | awk '{print $4}' | cut -d/ -f1 | head -1)
fi
[ -n "$bridge" ] || { echo "local-invoke: cannot tell the host's address on the Docker bridge" >&2; exit 1; }

step "The Lambda base image"
base_image="public.ecr.aws/lambda/provided:al2023-$architecture"
if docker image inspect "$base_image" >/dev/null 2>&1 || timeout 120 docker pull -q "$base_image" >/dev/null 2>&1; then
  echo "using $base_image"
else
  # Where the image cannot be pulled (no route to public.ecr.aws): a stand-in under the
  # name SAM asks for, from this machine's own files. It runs the same bootstrap under
  # SAM's runtime interface emulator, but it is not Amazon Linux 2023.
  echo "cannot pull $base_image: building a stand-in for this machine only under that name"
  echo "(this machine's glibc and loader, the libraries the bootstrap loads, /bin/sh, mv and chmod, CA certificates)"
  root="$work/stand-in"
  mkdir -p "$root/tmp" "$root/var/task" "$root/var/runtime" "$root/etc/ssl"
  # SAM's Dockerfile on the base image runs mv and chmod in /bin/sh.
  for file in /bin/sh /bin/mv /bin/chmod \
    $(ldd "$bootstrap" /bin/sh /bin/mv /bin/chmod | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    cp --parents -L "$file" "$root"
  done
  cp -rL /etc/ssl/certs "$root/etc/ssl/"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import \
    --change 'ENV LAMBDA_TASK_ROOT=/var/task' --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
    --change 'WORKDIR /var/task' - "$base_image" >/dev/null
  stand_in_images=("$base_image" "public.ecr.aws/lambda/provided:al2023-rapid-$architecture")
fi

step "Starting the ECR emulator on the Docker bridge ($bridge), where the container reaches it"
port=$(free_port)
setsid python3 emulator/ecr_emulator.py --host "$bridge" --port "$port" \
  --rule docker-hub=registry-1.docker.io --rule ecr-public=public.ecr.aws >"$work/emulator.log" 2>&1 &
started_pids+=($!)
wait_for_port "$port" "the ECR emulator" 30 "$!" "$bridge" || { cat "$work/emulator.log" >&2; exit 1; }
endpoint="http://$bridge:$port"
echo "listening on $endpoint"

# The function's settings for this run (--env-vars sets only variables the template
# declares). No queue: WARM_QUEUE_URL would otherwise be SAM's stand-in for the queue's
# Ref, "WarmQueue".
python3 - "$endpoint" >"$work/env.json" <<'PY'
import json, sys
print(json.dumps({"WarmerFunction": {
    "WARM_AWS_ENDPOINT_URL": sys.argv[1],
    "WARM_RULES": "docker-hub=registry-1.docker.io,ecr-public=public.ecr.aws",
    "WARM_IMAGES": "nginx:1.27,public.ecr.aws/docker/library/redis:7",
    "WARM_QUEUE_URL": "",
}}))
PY
# SAM hands the shell's credentials and Region to the container; the emulator takes any.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL

invoke_args=(--template "$build_dir/template.yaml" --env-vars "$work/env.json"
  --parameter-overrides "Architecture=$architecture" --region us-east-1)
[ ${#stand_in_images[@]} -eq 0 ] || invoke_args+=(--skip-pull-image)

failed=0
for name in schedule direct sqs; do
  step "sam local invoke WarmerFunction --event events/$name.json"
  invoked=$SECONDS
  "$sam" local invoke WarmerFunction --event "events/$name.json" "${invoke_args[@]}" \
    >"$work/$name.out" 2>"$work/$name.err" || true
  if python3 - "$name" "$work/$name.out" <<'PY'
import json, sys

name, path = sys.argv[1], sys.argv[2]
lines = [line for line in open(path).read().splitlines() if line.strip()]
try:
    answer = json.loads(lines[-1])
except (IndexError, json.JSONDecodeError):
    sys.exit(f"{name}: the function gave no answer")


def check(condition, what):
    if not condition:
        sys.exit(f"{name}: expected {what}, got {json.dumps(answer)}")


if name in ("schedule", "direct"):
    check(isinstance(answer, dict) and "summary" in answer, "the warm's report")
    summary, images = answer["summary"], answer["images"]
    for image in images:
        print(f"  {image['input']:45} {image['status']:10} {image['cache_repository']}")
    counts = ", ".join(f"{summary[s]} {s}" for s in ("imported", "refreshed", "unchanged", "pending", "failed", "skipped"))
    print(f"  {summary['total']} images: {counts} in {summary['duration_ms']} ms")
    check([i["cache_repository"] for i in images] == ["docker-hub/library/nginx", "ecr-public/docker/library/redis"]
          and all(i["status"] in ("imported", "unchanged") for i in images), "both images warm")
    if name == "direct":
        check(summary["unchanged"] == 2, "both images unchanged after the schedule's warm")
else:
    print("  " + json.dumps(answer))
    # The record of the wrong shape comes back; the others were warmed.
    check(answer == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]},
          "only the record of the wrong shape to come back")
PY
  then
    echo "ok   $name ($((SECONDS - invoked))s)"
  else
    failed=$((failed + 1))
    echo "--- sam local invoke's output" >&2
    tail -40 "$work/$name.err" >&2
  fi
done

step "Done in $((SECONDS - started))s: stopping what local-invoke started"
[ "$failed" -eq 0 ] || { echo "local-invoke: $failed of 3 invocations failed" >&2; exit 1; }
