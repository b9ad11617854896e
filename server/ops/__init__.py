"""Running the gateway: health checks (health.py), metrics (metrics.py, collectors.py), logs
(logs.py), rate limits (limits.py) and the SIGHUP reload (reload.py)."""
