# `make test` runs everything CI checks.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all build test lint deps clean

all: build

build:
	cargo build --release

deps: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

test: deps lint
	cargo test
	bash tests/lambda-e2e.sh

clean:
	cargo clean
	rm -rf $(VENV)
