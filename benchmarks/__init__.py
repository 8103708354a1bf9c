"""respkv's benchmarks: run them all with ``python -m benchmarks`` (or ``nox -s bench``).

See benchmarks/README.md for what each script measures and the latest figures.
"""
