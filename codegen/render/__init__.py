"""Renderers: IR -> file text (models via datamodel-code-generator, the rest via jinja2)."""
