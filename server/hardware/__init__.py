"""The cluster's hardware, computed from slurmrestd's nodes and partitions (no aiohttp here).

``nodes`` reads slurmrestd's answers into plain records, ``gres`` reads GRES strings, ``summary``
computes what ``GET /hardware/table``, ``/hardware/stats`` and ``/hardware/avail`` answer
(server/endpoints/hardware.py serves them). docs/extending.md walks through how they were added.
"""
