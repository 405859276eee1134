# `make test` runs everything CI checks.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all build lambda demo test lint deps clean

all: build

build:
	cargo build --release

# The deployment package for Lambda on arm64 (target/lambda/ecr-cache-warmer/bootstrap);
# `sam build` does the same through cargo-lambda.
lambda: deps
	cargo lambda build --release --arm64

deps: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

# The warmer's main job on this machine, against an ECR emulator: see README.
demo: deps
	bash scripts/demo.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cfn-lint template.yaml

test: deps lint
	cargo test
	python3 tests/template_check.py
	python3 -m pytest -q emulator/tests
	bash tests/lambda-e2e.sh

clean:
	cargo clean
	rm -rf $(VENV)
