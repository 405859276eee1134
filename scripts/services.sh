# Shared by scripts/demo.sh, scripts/local-invoke.sh and tests/lambda-e2e.sh:
# start the ECR emulator and the function under cargo-lambda on free loopback
# ports, and stop every process started here when the calling script exits.
# Source it; it needs `work`, a scratch folder, set first.

export PATH="$PWD/.venv/bin:$PATH"
started_pids=()

stop_services() {
  for pid in "${started_pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  for pid in "${started_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap stop_services EXIT
trap 'exit 130' INT TERM

# The folder cargo builds into: target/ of the workspace, or CARGO_TARGET_DIR (or
# build.target-dir of a cargo config) when set.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_port PORT NAME SECONDS PID [HOST]: until PORT of HOST (default 127.0.0.1)
# accepts connections, while PID lives.
wait_for_port() {
  local port=$1 what=$2 seconds=$3 pid=$4 host=${5:-127.0.0.1}
  for _ in $(seq "$((seconds * 10))"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what stopped before it listened on port $port" >&2
      return 1
    fi
    if python3 -c "import socket; socket.create_connection(('$host', $port), 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$what did not listen on port $port within ${seconds}s" >&2
  return 1
}

# start_emulator ARGS...: the ECR emulator, in its own process group; exports
# AWS_ENDPOINT_URL and test credentials for what runs next.
start_emulator() {
  local port
  port=$(free_port)
  setsid python3 emulator/ecr_emulator.py --port "$port" "$@" >"$work/emulator.log" 2>&1 &
  started_pids+=($!)
  wait_for_port "$port" "the ECR emulator" 30 "$!" || { cat "$work/emulator.log" >&2; return 1; }
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
}

# start_function ENV_FILE: `cargo lambda watch` with the function's environment;
# sets lambda_port.
start_function() {
  lambda_port=$(free_port)
  setsid cargo lambda watch -A 127.0.0.1 -P "$lambda_port" --env-file "$1" >"$work/watch.log" 2>&1 &
  started_pids+=($!)
  wait_for_port "$lambda_port" "cargo lambda watch" 300 "$!" || { cat "$work/watch.log" >&2; return 1; }
}

# invoke EVENT_FILE: the function's answer on stdout.
invoke() {
  cargo lambda invoke ecr-cache-warmer -A 127.0.0.1 -P "$lambda_port" --data-file "$1"
}

# function_env VAR=VALUE...: an env file for start_function, pointing at the emulator.
function_env() {
  {
    printf '%s="%s"\n' AWS_ENDPOINT_URL "$AWS_ENDPOINT_URL" AWS_REGION us-east-1 \
      AWS_ACCESS_KEY_ID test AWS_SECRET_ACCESS_KEY test
    for pair in "$@"; do
      printf '%s="%s"\n' "${pair%%=*}" "${pair#*=}"
    done
  } >"$work/function.env"
  echo "$work/function.env"
}
