"""UpstreamVersions: what the holder serves until and after slurmrestd answers. The discovery in
a running gateway is tested in tests/server/test_gateway_versions.py (building a gateway takes
longer than this folder's blocking-call check allows one callback)."""

from __future__ import annotations

from slurmgate.generated import ROUTES
from slurmgate.server.upstream.versions import UpstreamVersions

V = "v0.0.45"
OLDER = "v0.0.44"


def test_until_slurmrestd_answers_the_configured_versions_are_served() -> None:
    assert UpstreamVersions().served == tuple(ROUTES)
    configured = UpstreamVersions([V, OLDER])
    # oldest first, whatever the configured order
    assert (configured.served, configured.learnt) == ((OLDER, V), False)
    assert configured.learn(["v0.0.45", "v0.0.99"]) == (V,)  # never one not generated
    assert (configured.served, configured.learnt) == ((V,), True)
