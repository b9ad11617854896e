"""What a transport takes and what holds the SlurmUser token: reprs that never show it."""

from __future__ import annotations

import time

from slurmgate.server.upstream.token import SlurmUserToken
from slurmgate.server.upstream.token_sources import Token, TokenSource
from slurmgate.server.upstream.transport import UpstreamRequest

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJzbHVybSJ9.c2VjcmV0LXNpZ25hdHVyZQ"  # noqa: S105


def test_request_repr_hides_the_token_and_the_body() -> None:
    request = UpstreamRequest(
        "POST",
        "/slurm/v0.0.45/job/submit",
        (
            ("Content-Type", "application/json"),
            ("X-SLURM-USER-NAME", "alice"),
            ("x-slurm-user-token", TOKEN),
            ("Authorization", f"Bearer {TOKEN}"),
        ),
        b'{"job": {"script": "#!/bin/sh\\necho private"}}',
    )
    for text in (repr(request), str(request), f"{request}", repr([request])):
        assert TOKEN not in text
        assert "private" not in text
    assert repr(request) == (
        "UpstreamRequest(method='POST', target='/slurm/v0.0.45/job/submit', headers=("
        "('Content-Type', 'application/json'), ('X-SLURM-USER-NAME', 'alice'), "
        "('x-slurm-user-token', '<redacted>'), ('Authorization', '<redacted>')), "
        "body=<46 bytes>)"
    )


def test_request_is_still_a_plain_value() -> None:
    request = UpstreamRequest("GET", "/x", (("X-SLURM-USER-TOKEN", TOKEN),))
    assert request == UpstreamRequest("GET", "/x", (("X-SLURM-USER-TOKEN", TOKEN),))
    assert request.headers[0][1] == TOKEN  # hidden from repr only


class OneToken:
    """A source handing out :data:`TOKEN`."""

    name = "one"
    poll_interval: float | None = None

    async def fetch(self) -> Token:
        now = time.time()
        return Token(TOKEN, now, now + 600, "slurm")

    async def changed(self) -> bool:
        return False


async def test_token_holders_never_show_the_token() -> None:
    source: TokenSource = OneToken()
    token = await source.fetch()
    manager = SlurmUserToken(source, user="slurm", renew_at=0.5, retry_interval=5)
    assert await manager.get() == TOKEN
    for holder in (token, manager):
        assert TOKEN not in repr(holder)
        assert TOKEN not in str(holder)
    assert repr(token).startswith("Token(issued_at=")
