"""``make demo``: the gateway in front of the lab's Slurm 26.05, with a demo token, in foreground.

Writes ``build/demo/slurmgate.toml`` and ``build/demo/tokens.toml``, creates a token for alice
limited to the account physics with ``slurmgate token create``, prints working ``curl`` lines,
then runs ``slurmgate serve`` until interrupted. The lab must be up (``make demo`` does that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .env import load_lab

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "build" / "demo"
PORT = int(os.environ.get("SLURMGATE_DEMO_PORT", "8080"))
SCOPES = ("slurm:read", "slurm:jobs:manage", "slurmdb:read")
JOB = json.dumps(
    {
        "job": {
            "script": "#!/bin/sh\nsleep 30",
            "account": "physics",
            "current_working_directory": "/",
            "environment": ["PATH=/bin:/usr/bin"],
        }
    }
)


def main() -> int:
    """Configure, create a token, show how to use it, and serve."""
    suite = load_lab().suites["forky"]
    slurmgate = shutil.which("slurmgate", path=str(Path(sys.executable).parent))
    if slurmgate is None:
        print("demo: the slurmgate command is missing; run make venv", file=sys.stderr)
        return 2
    DEMO.mkdir(parents=True, exist_ok=True)
    tokens = DEMO / "tokens.toml"
    tokens.unlink(missing_ok=True)
    config = DEMO / "slurmgate.toml"
    config.write_text(
        f"""# Written by make demo: the gateway in front of the lab's forky suite.
[listen]
host = "127.0.0.1"
port = {PORT}

[upstream]
transport = "http"
url = "{suite.url}"

[slurm_user_token]
source = "jwt_key"
user = "slurm"
jwt_key = "{suite.jwt_key}"

[auth]
tokens_file = "{tokens}"

[cache]
backend = "memory"
"""
    )
    create = [slurmgate, "token", "create", "--tokens-file", str(tokens), "--name", "demo-alice"]
    create += ["--user", "alice", "--account", "physics", "--expires", "1d"]
    for scope in SCOPES:
        create += ["--scope", scope]
    secret = subprocess.run(create, capture_output=True, text=True, check=True).stdout.strip()
    version = suite.versions[-1]
    base = f"http://127.0.0.1:{PORT}"
    print(
        f"""
slurmgate demo: {base} in front of Slurm {suite.slurm_release} ({suite.url}), as alice.
A token for alice (scopes {", ".join(SCOPES)}; Slurm account physics only) is in TOKEN:

  export TOKEN='{secret}'
  curl -s {base}/meta/versions
  curl -s -H "Authorization: Bearer $TOKEN" {base}/slurm/{version}/ping/
  curl -s -H "Authorization: Bearer $TOKEN" {base}/slurm/latest/nodes/
  curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" {base}/slurm/latest/jobs/
       # twice within a second: X-Cache: MISS, then HIT with Age (docs/caching.md)
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{JOB}' {base}/slurm/{version}/job/submit
  curl -s {base}/slurm/{version}/ping/          # no token: 401
  # the same job with "account": "chem": 403, the token is limited to physics

Configuration: {config}
Stop with Ctrl-C.
""",
        flush=True,
    )
    os.execv(slurmgate, [slurmgate, "serve", "--config", str(config)])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
