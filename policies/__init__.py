"""Authorization as data plus pure functions; no aiohttp, no import of codegen."""
