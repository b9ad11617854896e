"""Render ``routes.py`` of an API version and the ``__init__.py`` files around it."""

from __future__ import annotations

from collections.abc import Sequence

from slurmgate.codegen.ir import ApiSpec, Build
from slurmgate.codegen.render.header import header
from slurmgate.codegen.render.templates import environment

__all__ = ["render_package", "render_routes", "render_version_init"]


def render_routes(api: ApiSpec) -> str:
    """The routing table module of one API version."""
    imports = {"CachePolicy", "Namespace", "Route"}
    if any(route.accounts for route in api.routes):
        imports |= {"AccountLocation", "LocationKind", "ValueForm", "WhenAbsent"}
    return (
        environment()
        .get_template("routes.py.jinja")
        .render(
            header=header(api.version),
            api=api,
            imports=sorted(imports),
        )
    )


def render_version_init(api: ApiSpec) -> str:
    """``__init__.py`` of one API version's package."""
    return (
        environment()
        .get_template("version_init.py.jinja")
        .render(header=header(api.version), api=api)
    )


def render_package(build: Build) -> str:
    """``__init__.py`` of ``slurmgate.generated``: the versions and their routing tables."""
    apis: Sequence[ApiSpec] = build.apis
    return (
        environment()
        .get_template("package_init.py.jinja")
        .render(header=header("MANIFEST"), apis=apis)
    )
