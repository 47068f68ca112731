"""Window aggregates against a brute-force reference: per event, merged, and vectorised."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch.runtime.aggregate import SeriesStats, group_partials

samples = st.lists(
    st.tuples(
        st.integers(0, 30_000_000).map(lambda us: us / 1e6),  # event times have µs resolution
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=60,
)


def reference(rows: list[tuple[float, float]]) -> dict[str, float]:
    """Exact rational arithmetic on the whole series: population std, least-squares slope of
    value on time, latest = value at the largest time (later sample wins ties)."""
    t = [Fraction(r[0]) for r in rows]
    v = [Fraction(r[1]) for r in rows]
    n = len(rows)
    t_mean, v_mean = sum(t) / n, sum(v) / n
    s_tt = sum((x - t_mean) ** 2 for x in t)
    s_tv = sum((x - t_mean) * (y - v_mean) for x, y in zip(t, v, strict=True))
    s_vv = sum((y - v_mean) ** 2 for y in v)
    latest = max(range(n), key=lambda i: (rows[i][0], i))
    return {
        "count": n,
        "sum": float(sum(v)),
        "mean": float(v_mean),
        "std": math.sqrt(s_vv / n),
        "min": float(min(v)),
        "max": float(max(v)),
        "slope": float(s_tv / s_tt) if s_tt else 0.0,
        "latest": rows[latest][1],
    }


def assert_close(got: dict[str, float], want: dict[str, float], span_s: float) -> None:
    """Within 1e-9 of the values' scale (the slope: of the scale over the time span)."""
    assert got.keys() == want.keys()
    scale = max(1.0, abs(want["min"]), abs(want["max"]))
    for name, value in want.items():
        tol = 1e-9 * scale / (max(span_s, 1e-6) if name == "slope" else 1.0)
        assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=tol), (name, got, want)


@settings(max_examples=300, deadline=None)
@given(samples, st.integers(0, 60))
def test_per_event_merged_and_vectorised_agree_with_numpy(rows, cut) -> None:
    want = reference(rows)
    span = max(r[0] for r in rows) - min(r[0] for r in rows)
    one = SeriesStats()
    for t, v in rows:
        one.update(t, v)
    assert_close(one.result(), want, span)

    left, right = SeriesStats(), SeriesStats()
    for i, (t, v) in enumerate(rows):
        (left if i < cut else right).update(t, v)
    assert_close(left.merge(right).result(), want, span)

    # Vectorised: two groups interleaved, then the halves of group 0 merged.
    groups = np.array([i % 2 for i in range(len(rows))])
    t = np.array([r[0] for r in rows])
    v = np.array([r[1] for r in rows])
    partial = group_partials(groups, t, v, 2)
    for g in (0, 1):
        members = [rows[i] for i in range(len(rows)) if i % 2 == g]
        if members:
            got = SeriesStats.from_partial(partial, g).result()
            assert_close(got, reference(members), span)

    restored = pickle.loads(pickle.dumps(one))
    assert restored.result() == one.result()
