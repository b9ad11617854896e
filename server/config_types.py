"""Value types and the base class shared by every section of the settings (server/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo
from yarl import URL

__all__ = ["ConfigPath", "PositiveSeconds", "Section", "Text", "Texts", "parse_url"]

PositiveSeconds = Annotated[float, Field(gt=0, le=86400)]
#: A non-empty string (no NUL: it may end up in a command line or a path).
Text = Annotated[str, Field(min_length=1, pattern=r"^[^\x00]+$")]
#: A TOML array of non-empty strings.
Texts = Annotated[tuple[Text, ...], Field(strict=False)]


def _not_empty(value: object) -> object:
    if value == "":
        raise ValueError("an empty path; leave the key out instead")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a path with a NUL byte")
    return value


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    """A relative path in the file means relative to the file's folder, not to the cwd."""
    base = (info.context or {}).get("base")
    return value if value.is_absolute() or base is None else base / value


#: A path in the configuration; relative ones are taken from the configuration file's folder.
ConfigPath = Annotated[
    Path, Field(strict=False), BeforeValidator(_not_empty), AfterValidator(_relative_to_config)
]


class Section(BaseModel):
    """Base of every settings section: frozen, unknown keys refused, no type coercion."""

    # Strict: "8080" is not a port and "yes" is not true; TOML has real numbers and booleans.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def parse_url(value: str) -> URL:
    """``value`` as a URL with a readable port, or ValueError saying why not."""
    try:
        url = URL(value)
        url.port  # noqa: B018 - reading it validates it
    except ValueError as error:
        raise ValueError(f"not a usable URL: {error}") from None
    return url
