"""The jinja2 environment of the renderers: templates in codegen/templates, values as Python."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import jinja2

__all__ = ["environment", "python_literal"]

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def python_literal(value: object) -> str:
    """Python source for a value: enum members by name, everything else by ``repr``."""
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, str | bool | int | tuple) or value is None:
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def environment() -> jinja2.Environment:
    """A strict environment: undefined names fail, whitespace is controlled by the templates."""
    env = jinja2.Environment(  # noqa: S701 - renders Python source, not HTML
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["py"] = python_literal
    return env
