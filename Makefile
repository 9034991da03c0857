# The two commands: `make run` starts the whole back office, `make test` passes the suite.
# DATABASE_URL / REDIS_URL switch from the embedded defaults to PostgreSQL / Redis servers.
# The demo network is loaded by `make demo`, by `DEMO=1 make run`, and by the first `make run`
# on the embedded defaults; never otherwise, and it never resets a password.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: run demo test lint format bench simulate backup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# NODES=N (N > 1): N daphne nodes behind HAProxy on PORT (README "Several nodes"); Debian's
# haproxy is installed first where it is missing.
NODES ?= 1

run: $(STAMP)
	@if [ "$(NODES)" != "1" ] && ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then \
		echo "NODES=$(NODES) needs HAProxy: installing Debian's haproxy"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }; \
	fi
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py collectstatic --no-input -v0
	$(BIN)/python manage.py demo_data --if-wanted
	NODES=$(NODES) $(BIN)/python -m cpo.run

demo: $(STAMP)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py demo_data

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The load benchmark: BENCH_FULL=1 for 10,000 stations at 1,000 msg/s for 10 minutes;
# BENCH_STATIONS / BENCH_RATE / BENCH_DURATION override. Results in bench-results/.
bench: $(STAMP)
	$(BIN)/python manage.py bench

# Simulated stations against a running back office: `make simulate` drives the demo
# stations of `make run`; SIMULATE_ARGS="--count 500 --create" adds generated ones.
simulate: $(STAMP)
	$(BIN)/python manage.py simulate --demo $(SIMULATE_ARGS)

# A consistent backup of the database, the secret key and media, taken while the back office
# runs (README "Backups"). BACKUP_DIR is where the dated folders go.
BACKUP_DIR ?= var/backups
backup: $(STAMP)
	$(BIN)/python manage.py backup $(BACKUP_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/test .pytest_cache
