# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py

.PHONY: setup run test test-cluster cluster iproute2 bench bench-thumbnails bench-memory bench-dashboard bench-load bench-pipeline bench-probes bench-uploads bench-smartcrop bench-fairshare bench-sweep bench-finishes lint chromium postgresql nginx clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(INSTALLED)
	$(MANAGE) migrate --noinput -v0
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) ensure_admin

run: setup
	$(MANAGE) runservices

# Browser tests drive Debian's Chromium; install it when missing (needs root, as on CI).
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# A private PostgreSQL (parroter.local_postgres: CI, benchmarks) runs Debian's server binaries;
# install them when missing (needs root, as on CI).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# tests/test_nginx.py runs deploy/nginx.conf in Debian's nginx; install it when missing (needs
# root, as on CI).
nginx:
	@[ -x /usr/sbin/nginx ] || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null)

test: $(INSTALLED) chromium nginx
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Hosts made of network namespaces need Debian's ip (iproute2); install it when missing (root).
iproute2:
	@command -v ip >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null)

# Parroter on seven hosts made of network namespaces (tests/cluster/harness.py), broken as hosts
# break: a host killed mid-run, Redis restarted. Needs root; a few minutes.
test-cluster: $(INSTALLED) nginx postgresql iproute2
	$(BIN)/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

# The same cluster to look at: it prints its addresses and logins; Ctrl-C removes it.
cluster: $(INSTALLED) nginx postgresql iproute2
	$(BIN)/python -m tests.cluster.harness

# The thumbnail kind against the tutorial's way, a 200-image job against single-image jobs, and
# what animated thumbnails cost (bench/thumbnails.py, ~4 minutes); BENCH_ARGS=--quick to smoke it,
# BENCH_ARGS="--only floor" for the kind against its decode-only floor alone (~2 minutes).
bench: $(INSTALLED)
	$(BIN)/python bench/thumbnails.py $(BENCH_ARGS)

bench-thumbnails: bench

# Smart crop against the centre crop: how much of an off-centre subject each keeps on 66 made-up
# photos, and the CPU it adds per image (bench/smartcrop.py, under a minute).
bench-smartcrop: $(INSTALLED)
	$(BIN)/python -m bench.smartcrop $(BENCH_ARGS)

# How long a person's 5 small jobs wait behind someone's 100 heavy ones, with fair dispatch and
# first in, first out (bench/fairshare.py, about 2 minutes).
bench-fairshare: $(INSTALLED)
	$(BIN)/python -m bench.fairshare $(BENCH_ARGS)

# Peak memory of one job per input format and mode at a large but allowed size, against the
# kind's estimate of it (bench/memory.py, about 1.5 minutes).
bench-memory: $(INSTALLED)
	$(BIN)/python bench/memory.py

# Peak memory of the orphan sweep at 1,000,000 job folders on disk and 100,000 on S3 (moto), and
# at a tenth of each, against the listdir() it replaced (bench/sweep.py, about 5 minutes).
bench-sweep: $(INSTALLED)
	$(BIN)/python -m bench.sweep $(BENCH_ARGS)

# The web CPU of the worst upload the size limits allow (marker-padded JPEGs) against ordinary
# photos of the same size, through gunicorn; about a minute (bench/uploads.py).
bench-uploads: $(INSTALLED)
	$(BIN)/python bench/uploads.py $(BENCH_ARGS)

# The operator console and Job admin at 1,000,000 jobs on SQLite and a private PostgreSQL;
# BENCH_ARGS="--jobs 100000" for a quick run.
bench-dashboard: $(INSTALLED) postgresql
	$(BIN)/python bench/dashboard.py $(BENCH_ARGS)

# The real services (the Procfile's lines but flower) under 20 users for 60 s, on SQLite and on a
# private PostgreSQL, driven by locust on loopback; BENCH_ARGS="--databases sqlite" for one.
bench-load: $(INSTALLED) postgresql
	$(BIN)/python bench/load.py $(BENCH_ARGS)

# Probes, /metrics, the console's partials and the job page's poll with the broker healthy, down,
# hung and slow, and how soon a paused job worker is seen; both databases, about 3 minutes.
# BENCH_ARGS="--databases sqlite" for one.
bench-probes: $(INSTALLED) postgresql
	$(BIN)/python bench/probes.py $(BENCH_ARGS)

# The pipeline against its ceiling (the bare thumbnail kind in a 2-process pool): N jobs drained
# by a worker started after they were queued, and N submitted through the form while it runs,
# with CPU per job per service and SQL per job; both databases, about 3 minutes.
# BENCH_ARGS="--jobs 300 --databases sqlite --no-with-flower".
bench-pipeline: $(INSTALLED) postgresql
	$(BIN)/python bench/pipeline.py $(BENCH_ARGS)

# Finishes per second on a private PostgreSQL with 1, 4, 16 and 64 concurrent finishers: a job's
# finish with its rollup write, sharded and on one row, against the same transaction without it
# (bench/finishes.py, about 2½ minutes). BENCH_ARGS="--rounds 3 --finishers 1,64" for a quick run.
bench-finishes: $(INSTALLED) postgresql
	$(BIN)/python -m bench.finishes $(BENCH_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var
