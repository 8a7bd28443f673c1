"""Column values as the recorder checks and converts them (src/migflow/records/values.py).

A wrong value must fail at the call that made it, naming the table and the
column, and a right one must reach the spool in one JSON-friendly form.
"""

from __future__ import annotations

import datetime as dt

import pytest

from migflow.records.values import normalize_row, to_timestamp

UTC = dt.UTC
WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def test_timestamps_of_every_accepted_kind_become_iso_utc():
    assert to_timestamp(None) is None
    assert to_timestamp(WHEN.timestamp()) == "2025-03-04T05:06:07.890000+00:00"
    assert to_timestamp(1741064767) == "2025-03-04T05:06:07+00:00"
    assert to_timestamp(WHEN.astimezone(dt.timezone(dt.timedelta(hours=2)))) == "2025-03-04T05:06:07.890000+00:00"
    assert to_timestamp("2025-03-04T07:06:07+02:00") == "2025-03-04T05:06:07+00:00"


def test_a_naive_timestamp_is_local_time():
    naive = dt.datetime(2025, 3, 4, 5, 6, 7)
    expected = naive.astimezone().astimezone(UTC).isoformat()
    assert to_timestamp(naive) == expected
    assert to_timestamp("2025-03-04T05:06:07") == expected


@pytest.mark.parametrize("value", [True, False, [2025], b"2025"])
def test_what_is_not_a_timestamp(value):
    with pytest.raises(ValueError, match="not a timestamp"):
        to_timestamp(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), (True, 1), (False, 0), (2.4, 2), (2.6, 3), (-2.6, -3), ("12", 12), ("-3", -3), ("2.6", 2), ("1e3", 1000), ("2E2", 200)],
)
def test_integers(value, expected):
    assert normalize_row("steps", {"position": value}) == {"position": expected}
    assert type(normalize_row("steps", {"position": value})["position"]) is int


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "x", [1], {"a": 1}])
def test_what_is_not_an_integer(value):
    with pytest.raises(ValueError, match=r"^steps\.position \(INTEGER\): "):
        normalize_row("steps", {"position": value})


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (2.5, 2.5), ("2.5", 2.5), (True, 1.0), (False, 0.0)])
def test_doubles(value, expected):
    got = normalize_row("steps", {"duration_ms": value})["duration_ms"]
    assert got == expected and type(got) is float


@pytest.mark.parametrize("value", [None, [1.0], {"ms": 1}])
def test_what_is_not_a_double(value):
    if value is None:
        assert normalize_row("steps", {"duration_ms": None}) == {"duration_ms": None}
        return
    with pytest.raises(ValueError, match=r"^steps\.duration_ms \(DOUBLE\): not a number"):
        normalize_row("steps", {"duration_ms": value})


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False), ("TRUE", True)])
def test_booleans(value, expected):
    assert normalize_row("migrations", {"memory_verified": value}) == {"memory_verified": expected}


@pytest.mark.parametrize("value", [2, -1, "yes", "", 1.0, None])
def test_what_is_not_a_boolean(value):
    if value is None:
        assert normalize_row("migrations", {"memory_verified": None}) == {"memory_verified": None}
        return
    with pytest.raises(ValueError, match=r"^migrations\.memory_verified \(BOOLEAN\): not true or false"):
        normalize_row("migrations", {"memory_verified": value})


def test_json_columns_are_plain_json_and_lists_are_strings():
    row = normalize_row("migrations", {"stats": {"when": WHEN, "ram": (1, 2)}, "flags": ("live", 2)})
    assert row == {"stats": {"when": "2025-03-04 05:06:07.890000+00:00", "ram": [1, 2]}, "flags": ["live", "2"]}
    assert normalize_row("migrations", {"flags": "live"}) == {"flags": ["live"]}
    assert sorted(normalize_row("migrations", {"flags": {"a", "b"}})["flags"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"^migrations\.flags \(VARCHAR\[\]\): not a list of strings: 3$"):
        normalize_row("migrations", {"flags": 3})


def test_varchar_and_timestamp_columns():
    assert normalize_row("runs", {"workflow": 12, "started_at": 0}) == {"workflow": "12", "started_at": "1970-01-01T00:00:00+00:00"}


def test_unknown_columns_are_named_with_the_columns_there_are():
    with pytest.raises(ValueError) as one:
        normalize_row("steps", {"position": 1, "bogus": 1})
    assert str(one.value) == "steps: unknown column 'bogus'; columns are: run_id, position, step, status, started_at, duration_ms, error, result"
    with pytest.raises(ValueError) as two:
        normalize_row("migrations", {"a": 1, "b": 2})
    assert str(two.value).startswith("migrations: unknown columns 'a', 'b' (put anything else in 'extra'); columns are: run_id, leg, source, ")
