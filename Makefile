# The two commands of the README. Both work on a fresh clone with only Python 3.11 installed.
.PHONY: run test lint bench

run:  ## set up everything and start web + worker + beat with the sample papers loaded
	bash scripts/run.sh

test:  ## install test dependencies, start PostgreSQL/Redis if needed, run the whole suite
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:  ## the throughput benchmark (see README, "Benchmark"); arguments in BENCH_ARGS="..."
	bash scripts/bench.sh $(BENCH_ARGS)
