"""The SlurmUser token is renewed before it expires while the gateway serves the real Slurm."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp.test_utils import TestClient, TestServer

from slurmgate.server.app import build_app
from slurmgate.server.keys import SLURM_USER_TOKEN
from tests.lab.env import Lab
from tests.server.gateway import create_token, gateway_settings


async def test_short_lived_tokens_are_renewed_before_expiry(lab: Lab, tmp_path: Path) -> None:
    suite = lab.suites["forky"]
    secret = create_token(tmp_path / "tokens.toml", "alice")
    # Ten-second tokens, renewed when a fifth of their life has passed: about every 2 s.
    settings = gateway_settings(
        suite, "http", tmp_path / "tokens.toml", slurm_user_token={"lifespan": 10, "renew_at": 0.2}
    )
    app = build_app(settings)
    seen: dict[str, tuple[float, float]] = {}  # token -> (first seen, its exp)
    async with TestClient(TestServer(app)) as client:
        deadline = time.monotonic() + 12
        while len(seen) < 3 and time.monotonic() < deadline:
            response = await client.get(
                "/slurm/v0.0.45/ping/", headers={"Authorization": f"Bearer {secret}"}
            )
            assert response.status == 200, await response.text()
            token = await app[SLURM_USER_TOKEN].get()
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
            now = time.time()
            assert claims["exp"] > now, "an expired token was handed out"
            seen.setdefault(token, (now, float(claims["exp"])))
            await asyncio.sleep(0.2)
    assert len(seen) >= 3, "the token was not renewed"
    timeline = sorted(seen.values())
    for (_, old_exp), (new_seen, _) in itertools.pairwise(timeline):
        assert new_seen < old_exp, "a token was renewed only after the previous one had expired"
