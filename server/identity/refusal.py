"""Why a credential was not accepted: what the client is told, and what only the log gets."""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(Exception):
    """A credential was refused.

    ``description`` is safe to send to the client; ``reason`` (for the log) may say more, e.g.
    "wrong secret" versus "unknown token name", which the client must not be able to tell apart.
    ``name`` is the token's name (or "munge:<uid>") when it is known; never a secret or a digest.
    ``trouble`` marks refusals caused by the gateway's side (munged down), logged as errors.
    """

    def __init__(
        self, description: str, *, reason: str, name: str | None = None, trouble: bool = False
    ) -> None:
        super().__init__(description)
        self.description = description
        self.reason = reason
        self.name = name
        self.trouble = trouble
