# invoiceloop: `make run` starts the whole service, `make test` runs the whole suite.
# Both install what they need first: Debian packages (apt, as root or through sudo) and a .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SYSTEM_PACKAGES := python3-venv python3-dev gcc make chromium poppler-utils zbar-tools fonts-wqy-zenhei \
                   libpango-1.0-0 libpangoft2-1.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: system install run test lint bench bench-scale clean

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

SCALE_TO ?= 1000000
bench-scale: install  ## flat cost as data grows: builds (once, kept, resumable) the scale data sets, then measures them
	@dpkg -s wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	SCALE_DATA_DIR=$${SCALE_DATA_DIR:-$$HOME/.cache/invoiceloop-scale}-0 $(BIN)/python -m bench.scale_data \
	  --url $${SCALE_DB_URL:-postgresql://postgres@127.0.0.1:5432/invoiceloop_scale}_0 --to 1
	$(BIN)/python -m bench.scale_data --to $(SCALE_TO)
	$(BIN)/python -m bench.bench_scale

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-output .invoiceloop
