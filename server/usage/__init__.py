"""Usage reports computed from slurmdbd's job records (no aiohttp here).

``records`` reads ``GET /slurmdb/v0.0.XX/jobs`` answers into plain job records, ``request``
checks the query of ``GET /usage`` and cuts its window into slices, ``report`` clips each job to
the window and sums TRES-seconds per group (server/endpoints/usage.py serves them; docs/usage.md
documents the answer).
"""
