"""The response cache, without HTTP: backends (aiocache memory or Redis, ``backends``), keys
(``keys``), freshness (``freshness``), client directives (``control``), single-flight
(``flight``) and the store that ties them together (``store``). Requests read through it in
server/pipeline/cache.py.

Import from the modules: this package imports nothing itself, so that the settings module
(``settings``, read by server/config.py) does not pull the store and its imports along.
"""
