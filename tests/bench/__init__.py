"""Benchmarks (issue 7): slurmgate side by side with slurmrestd, nginx proxy_cache and bare aiohttp.

``make bench`` (``python -m tests.bench``) fills the lab with held jobs, starts every server under
test as a subprocess on free loopback ports, drives it with wrk, and writes
``tests/bench/results/<date>.md`` with tables, plots and target verdicts. Not part of ``make test``;
``test_harness.py`` is the quick check of the harness that is.
"""
