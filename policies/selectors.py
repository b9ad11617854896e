"""Patterns that pick operations and request fields, shared by every ``policies/*.toml`` file.

Path patterns are written relative to the namespace and version (``/job/{job_id}`` picks
``/slurm/v0.0.45/job/{job_id}``), one segment per ``/``: ``*`` stands for one segment, ``**`` for
any number of segments, anything else must equal the segment (path parameters included, braces
too).
Trailing slashes never matter: slurmrestd serves ``/jobs`` and ``/jobs/`` alike.

Field patterns are dotted JSON paths in a request body; ``[]`` after a key means "every item of that
array" (``jobs[].account``), ``*`` stands for one key and ``**`` for any number of keys and items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FieldPattern",
    "OperationSelector",
    "PathPattern",
    "SplitPath",
    "split_path",
]

_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


@dataclass(frozen=True, slots=True)
class SplitPath:
    """A URL path cut into namespace, API version (if any) and the remaining segments."""

    namespace: str
    version: str | None
    segments: tuple[str, ...]


def split_path(path: str) -> SplitPath:
    """Split ``/slurm/v0.0.45/job/{job_id}`` into ``slurm``, ``v0.0.45``, ``(job, {job_id})``."""
    parts = tuple(part for part in path.split("/") if part)
    if not parts:
        return SplitPath("", None, ())
    if len(parts) > 1 and _VERSION.match(parts[1]):
        return SplitPath(parts[0], parts[1], parts[2:])
    return SplitPath(parts[0], None, parts[1:])


def _match_tokens(pattern: tuple[str, ...], tokens: tuple[str, ...], *, one: str) -> bool:
    """Glob match where ``**`` eats any run of tokens and ``*`` one token other than ``one``."""
    if not pattern:
        return not tokens
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_tokens(rest, tokens[i:], one=one) for i in range(len(tokens) + 1))
    if not tokens:
        return False
    matched = tokens[0] != one if head == "*" else head == tokens[0]
    return matched and _match_tokens(rest, tokens[1:], one=one)


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A path pattern (see the module docstring), parsed once."""

    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PathPattern:
        """Parse ``/job/{job_id}`` or ``/**``; an empty pattern picks the namespace root only."""
        return cls(tuple(part for part in text.split("/") if part))

    def matches(self, segments: tuple[str, ...]) -> bool:
        """Whether the path segments (after namespace and version) fit this pattern."""
        return _match_tokens(self.segments, segments, one="")

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class OperationSelector:
    """Picks operations by namespace, path pattern and HTTP method; ``None`` means any.

    ``excluded`` lists path patterns that the selector leaves alone even when ``path`` fits.
    """

    namespace: str | None
    path: PathPattern | None
    methods: frozenset[str] | None
    excluded: tuple[PathPattern, ...] = ()

    def matches(self, namespace: str, segments: tuple[str, ...], method: str) -> bool:
        """Whether an operation (already split by :func:`split_path`) is picked."""
        if self.namespace is not None and self.namespace != namespace:
            return False
        if self.path is not None and not self.path.matches(segments):
            return False
        if any(pattern.matches(segments) for pattern in self.excluded):
            return False
        return self.methods is None or method.upper() in self.methods

    def __str__(self) -> str:
        methods = ",".join(sorted(self.methods)) if self.methods is not None else "*"
        text = f"{methods} {self.namespace or '*'}:{self.path or '/**'}"
        if self.excluded:
            text += " except " + ",".join(str(pattern) for pattern in self.excluded)
        return text


@dataclass(frozen=True, slots=True)
class FieldPattern:
    """A request-body field pattern (see the module docstring), parsed once."""

    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> FieldPattern:
        """Parse ``jobs[].account`` into ``("jobs", "[]", "account")``."""
        tokens: list[str] = []
        for part in text.split("."):
            if not part:
                raise ValueError(f"empty step in field pattern {text!r}")
            name = part
            items = 0
            while name.endswith("[]"):
                name = name[:-2]
                items += 1
            if name:
                tokens.append(name)
            elif not tokens:
                raise ValueError(f"field pattern {text!r} starts with []")
            tokens.extend(["[]"] * items)
        return cls(tuple(tokens))

    def matches(self, path: tuple[str, ...]) -> bool:
        """Whether a body field path (``"[]"`` for array items) fits this pattern."""
        return _match_tokens(self.tokens, path, one="[]")

    def __str__(self) -> str:
        text = ""
        for step in self.tokens:
            text += step if step == "[]" or not text else f".{step}"
        return text
