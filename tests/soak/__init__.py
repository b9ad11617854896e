"""``make soak``: a 10-minute steady mixed load through the gateway, and the long fuzz.

Not part of ``make test`` (which runs a 30-second soak and a short fuzz); ``python -m tests.soak``
writes ``build/soak/report.md``.
"""
