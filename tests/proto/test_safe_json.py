"""proto.safe_json: the same answer as ``json.loads`` on valid input, one error type on the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.safe_json import JsonInputError, loads, nested_deeper_than

# JSON values whose strings hold the characters the depth scan must not be fooled by.
_tricky_text = st.text(alphabet=st.sampled_from('ab"\\[]{}/\n\u00e9\U0001f600'), max_size=12)
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _tricky_text
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky_text, inner, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(_values, st.booleans(), st.booleans())
def test_valid_json_parses_exactly_as_json_loads(
    value: Any, ascii_only: bool, as_bytes: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    raw: str | bytes = text.encode() if as_bytes else text
    depth = _depth(value)
    assert loads(raw, max_chars=len(raw), max_depth=max(depth, 1)) == json.loads(text)
    if depth > 1:
        with pytest.raises(JsonInputError) as info:
            loads(raw, max_chars=len(raw), max_depth=depth - 1)
        assert info.value.reason == "too_deep"


@given(_values)
def test_depth_scan_counts_only_brackets_outside_strings(value: Any) -> None:
    text = json.dumps(value)
    depth = _depth(value)
    assert not nested_deeper_than(text, depth)
    assert nested_deeper_than(text, depth - 1) == (depth > 0)


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    for text in ("[" * 30_000 + "]" * 30_000, '{"a":' * 5000 + "1" + "}" * 5000, "[" * 100_000):
        with pytest.raises(JsonInputError) as info:
            loads(text, max_chars=len(text))
        assert info.value.reason == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 1000, "b": ['\\"[[[' * 50]})
    assert loads(text, max_chars=len(text), max_depth=2) == json.loads(text)


def test_size_is_bounded_before_anything_else() -> None:
    with pytest.raises(JsonInputError) as info:
        loads(" " * 101 + "1", max_chars=100)
    assert info.value.reason == "too_large"
    assert loads("[1]", max_chars=3) == [1]


@pytest.mark.parametrize(
    "raw",
    ["", "{", '{"a":', '"unterminated', '["\\"]', "[1,]", "nul", b"\xff\xfe", "1 2", "\ud800x"],
)
def test_malformed_input_is_one_error_type(raw: str | bytes) -> None:
    with pytest.raises(JsonInputError) as info:
        loads(raw, max_chars=1000)
    assert info.value.reason == "malformed"
    assert isinstance(info.value, ValueError)  # callers that caught ValueError still do


def test_an_unterminated_string_full_of_quotes_is_linear() -> None:
    # Each escaped quote could start a string; a quadratic scan would take minutes here.
    text = "[" * 20 + '"' + '\\"' * 200_000
    with pytest.raises(JsonInputError) as info:
        loads(text, max_chars=len(text))
    assert info.value.reason == "malformed"
