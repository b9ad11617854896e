"""The build pipeline: specs/ + policies/ -> generated/. Never imported by the server."""
