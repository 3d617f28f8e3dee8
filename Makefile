# The two commands of the README. Both work on a fresh clone with only Python 3.11 installed.
.PHONY: run test lint bench bench-compare faults

run:  ## set up everything and start web + worker + beat with the sample papers loaded; WEB_PORT=8001 for another port
	@# Ctrl-C is how a run ends: the recipe shell outlives it (trap) and a 130 exit is not an error.
	@trap true INT; bash scripts/run.sh || test $$? -eq 130

test:  ## install test dependencies, start PostgreSQL/Redis if needed, run the whole suite
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports --no-logo

bench:  ## the throughput benchmark (see docs/benchmark.md); arguments in BENCH_ARGS="..."
	bash scripts/bench.sh $(BENCH_ARGS)

bench-compare:  ## REV=<git rev>: the benchmark on REV and on this tree alternately, as ratios; BENCH_ARGS="--subscribers 3000"
	@test -n "$(REV)" || { echo "usage: make bench-compare REV=<git rev> [BENCH_ARGS=...]"; exit 2; }
	bash scripts/bench_compare.sh $(REV) $(BENCH_ARGS)

faults:  ## delivery under real faults (see docs/faults.md); arguments in FAULTS_ARGS="..."
	bash scripts/faults.sh $(FAULTS_ARGS)
