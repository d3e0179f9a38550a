"""The store's JSON columns read back what was written, whichever encoder wrote it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.store.types import _json_default, json_dumps

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80) | st.text(max_size=10)
            | st.floats(allow_nan=False, allow_infinity=False) | st.decimals(allow_nan=False, allow_infinity=False, places=4)
            | st.datetimes(timezones=st.just(timezone.utc)))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), inner, max_size=4), max_leaves=15)


@settings(max_examples=400, deadline=None)
@given(value=_values)
def test_json_columns_hold_what_json_dumps_would(value):
    """orjson writes the columns; what they hold must read back as the standard library would have
    written it: amounts as exact strings, int keys as text, times in isoformat, big integers whole."""
    expected = json.loads(json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":")))
    assert json.loads(json_dumps(value)) == expected


def test_amounts_and_times_are_text_and_other_types_are_refused():
    written = json.loads(json_dumps({"amount": Decimal("10.10"), "at": datetime(2025, 1, 1, tzinfo=timezone.utc)}))
    assert written == {"amount": "10.10", "at": "2025-01-01T00:00:00+00:00"}
    with pytest.raises(TypeError, match="timedelta is not JSON serialisable"):
        json_dumps({"gap": timedelta(1)})
