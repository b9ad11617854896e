"""Property tests: the cache's readers of client input (``Cache-Control``/``Pragma``, the request
target and ``Accept`` that make a key) answer with a value or their own error, whatever they get.

``parse_directives`` may raise ``ValueError`` only (the cache step turns it into a 400 naming
``Cache-Control``); the key functions never raise. Text comes as aiohttp hands it over: decoded
from the wire as UTF-8 with ``surrogateescape``, so the only surrogates are U+DC80 to U+DCFF.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slurmgate.server.cache.control import Directives, parse_directives
from slurmgate.server.cache.keys import KeySpace, has_update_time, key_material, normalize_query

FUZZ = settings(deadline=None, max_examples=500)

#: What a header or target decoded with surrogateescape can hold.
WIRE_TEXT = st.text(
    st.one_of(st.characters(codec="utf-8"), st.integers(0xDC80, 0xDCFF).map(chr)), max_size=60
)
DIRECTIVE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ["no-cache", "no-store", "max-age", "stale-if-error", "MAX-AGE", "x", "=", ",", " "]
        ),
        st.sampled_from(["=0", "=10", '="5"', "=-1", "=1e3", "=٣", "=" + "9" * 30, '="']),
        WIRE_TEXT,
    ),
    max_size=8,
).map("".join)


@FUZZ
@given(cache_control=st.none() | DIRECTIVE_TEXT, pragma=st.none() | DIRECTIVE_TEXT)
def test_directives_are_read_or_refused_with_value_error(
    cache_control: str | None, pragma: str | None
) -> None:
    try:
        directives = parse_directives(cache_control, pragma)
    except ValueError:
        return
    assert isinstance(directives, Directives)
    assert directives.max_age is None or 0 <= directives.max_age <= 2**31
    assert directives.stale_if_error is None or directives.stale_if_error >= 0


@FUZZ
@given(
    path=WIRE_TEXT,
    query=WIRE_TEXT,
    accept=WIRE_TEXT,
    user=st.none() | WIRE_TEXT,
    prefix=st.text(min_size=1, max_size=10),
)
def test_key_material_and_keys_never_fail(
    path: str, query: str, accept: str, user: str | None, prefix: str
) -> None:
    target = f"{path}?{query}" if query else path
    material = key_material(target, accept, user)
    key = KeySpace(prefix).entry(material)
    assert key.startswith(f"{prefix}:")
    assert len(key) < len(prefix) + 100  # hashed: as long whatever the client sent
    assert isinstance(has_update_time(query), bool)
    assert normalize_query(normalize_query(query)) == normalize_query(query)
