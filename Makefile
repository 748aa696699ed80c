# The two commands that matter: `make run` and `make test`. Both build their
# own virtual environment in .venv from the pinned requirements.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST_PORT ?= 127.0.0.1:8000

.PHONY: run test lint format bench bench-pull bench-crowd clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Start the service on the embedded default: SQLite in ./var, the database as
# the store, Celery inline, a demo room; gunicorn with 4 workers.
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_room demo --title "Demo room"
	@echo ""
	@echo "  Danmaku is starting on http://$(HOST_PORT)/"
	@echo "  demo room:  http://$(HOST_PORT)/rooms/demo/   (demo comments when DANMAKU_DEMO is on)"
	@echo "  log in:     http://$(HOST_PORT)/accounts/login/"
	@echo "  API docs:   http://$(HOST_PORT)/api/v1/docs"
	@echo "  admin:      http://$(HOST_PORT)/admin/   (make an account: $(PY) manage.py createsuperuser)"
	@echo "  a token:    $(PY) manage.py issue_token alice"
	@echo ""
# exec: gunicorn takes the shell's place, so the SIGTERM make passes on (a
# supervisor or IDE stopping `make run`) reaches it instead of orphaning it.
# The demo sender (only when DANMAKU_DEMO is on) becomes gunicorn's child
# and exits within one pause once gunicorn is gone, however it stopped.
	exec env DANMAKU_BIND=$(HOST_PORT) sh -c '$(PY) manage.py demo_sender --if-enabled --stop-with-parent & exec $(BIN)/gunicorn -c danmaku_site/gunicorn.conf.py'

# The third-party players the browser tests in tests/players embed (DPlayer,
# ArtPlayer), pinned in package-lock.json; installed again only when it changes.
PLAYERS := tests/players
$(PLAYERS)/node_modules/.installed: $(PLAYERS)/package.json $(PLAYERS)/package-lock.json
	npm ci --prefix $(PLAYERS) --no-audit --no-fund
	touch $@

# The whole suite, lint included. .ci/run calls exactly this.
test: $(VENV)/.dev $(PLAYERS)/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.dev
	$(PY) bench/latency.py

# Pull throughput against a bare WSGI app on the same server (needs wrk:
# apt-get install wrk; nginx-light for the micro-cache runs). Pass options
# through BENCH_ARGS, e.g. make bench-pull BENCH_ARGS="--connections 64,256 --pin".
bench-pull: $(VENV)/.dev
	$(PY) bench/pull.py $(BENCH_ARGS)

# A crowd of viewers (one connection each, obeying next_ms) against a node
# this starts: issue 14's scenarios, a PASS/FAIL line each, a PNG timeline in
# artifacts/bench. Heavy: run it alone, with the open-file limit raised, e.g.
# ulimit -n 20000; flock /tmp/bench.lock make bench-crowd BENCH_ARGS="--scenario steady,storm --viewers 20000"
bench-crowd: $(VENV)/.dev
	$(PY) bench/crowd.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis $(PLAYERS)/node_modules
