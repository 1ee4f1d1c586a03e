# invoiceloop: `make run` starts the whole service, `make test` runs the whole suite.
# Both install what they need first: Debian packages (apt, as root or through sudo) and a .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SYSTEM_PACKAGES := python3-venv python3-dev gcc make chromium poppler-utils zbar-tools fonts-wqy-zenhei \
                   libpango-1.0-0 libpangoft2-1.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: system install run test lint bench clean

system:  ## Debian packages: CJK font for PDFs, Chromium for the browser tests, poppler/zbar to read PDFs back
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

install: system $(BIN)/.installed

run: install  ## the service on http://127.0.0.1:8000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set)
	$(BIN)/invoiceloop run

test: install  ## the whole suite (local PostgreSQL/Redis when listening, else embedded ones)
	$(BIN)/python -m pytest

lint: install  ## formatting, lint and strict typing, as CI checks them
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install  ## speed, as ratios against same-run baselines (wrk generates the HTTP load)
	@dpkg -s wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.bench_issue
	$(BIN)/python -m bench.bench_pdf
	$(BIN)/python -m bench.bench_verify
	$(BIN)/python -m bench.bench_delivery

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-output .invoiceloop
