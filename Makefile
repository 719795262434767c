# Shortcuts for dev.py, which needs nothing but Python 3.11+.
# make bench BENCH_ARGS="--max-records 1000000" passes options to the benchmark.
.PHONY: run test serve bench upstream
run:
	python3 dev.py run
test:
	python3 dev.py test
serve:
	python3 dev.py serve
bench:
	python3 dev.py bench $(BENCH_ARGS)
upstream:
	python3 dev.py upstream
