"""Live job events: one poller per cluster, a bounded buffer, filtered subscribers (docs/events.md).

``records`` reads slurmrestd's jobs, ``changes`` diffs two lists, ``filters`` decides who sees
what, ``buffer`` numbers and keeps events, ``hub`` queues them per subscriber, ``poller`` asks
slurmrestd, ``sse`` frames them, ``settings`` is ``[events]``; ``service`` ties them to the app.
"""
