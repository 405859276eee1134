# `make test` runs everything CI checks.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all build lambda package local-invoke demo bench soak test lint deps clean

all: build

build:
	cargo build --release

# The deployment package for Lambda on arm64 (target/lambda/ecr-cache-warmer/bootstrap);
# `sam build` does the same through cargo-lambda.
lambda: deps
	cargo lambda build --release --arm64

# The deployment package exactly as `sam build --beta-features` makes it, checked to be
# an aarch64 executable (.aws-sam/build/WarmerFunction/bootstrap); `sam deploy` uploads
# it. Takes minutes: not part of `make test`.
package: deps $(VENV)/sam/.installed
	bash scripts/package.sh

# The function in its Lambda container under `sam local invoke`, against the ECR emulator,
# with the schedule, direct and SQS sample events (see README, "Run it locally"). Needs
# root to start a Docker daemon of its own when none answers. A few minutes.
local-invoke: deps $(VENV)/sam/.installed
	bash scripts/local-invoke.sh

$(VENV)/sam/.installed: requirements-package.txt | $(VENV)/.installed
	python3 -m venv $(VENV)/sam
	$(VENV)/sam/bin/pip install --quiet --upgrade pip
	$(VENV)/sam/bin/pip install --quiet -r requirements-package.txt
	touch $@

deps: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

# The warmer's main job on this machine, against an ECR emulator: see README.
demo: deps
	bash scripts/demo.sh

# Throughput, rate cap, cold start and footprint against their targets (see README,
# Performance); writes bench-results.json. A few minutes: not part of `make test`.
bench:
	cargo build --release
	cargo bench --bench warm

# The fan-out under faults: 10,000 images from a schedule through the queue to the function
# under cargo-lambda, against the ECR emulator (see README, Performance); writes
# soak-results.json. A few minutes: not part of `make test`.
soak: deps
	bash scripts/soak.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cfn-lint template.yaml

test: deps lint
	cargo test
	python3 tests/template_check.py
	python3 tests/deploy_check.py
	python3 -m pytest -q emulator/tests
	bash tests/lambda-e2e.sh
	bash tests/lambda-recheck.sh

clean:
	cargo clean
	rm -rf $(VENV)
