"""The windowed benchmark measures what it says: the fleet flow over every reading, the windows
it must close, and the log's limit on the very same records; the CLI prints its keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wearwatch.benchmarks.runtime import PARTITIONS, fleet_records, run_windowed_benchmark
from wearwatch.bus.base import partition_for
from wearwatch.cli import app
from wearwatch.columnar import decode_columns
from wearwatch.events import Reading


def _expected_feature_vectors(readings: int, rows_per_record: int, hz: float) -> int:
    """Brute force: per partition, the (machine, window) pairs holding a reading whose
    ``end + grace`` the partition's final watermark (last time − 1 s delay) reaches."""
    records = fleet_records(readings, rows_per_record, hz)
    count = 0
    for partition in range(PARTITIONS):
        rows = [decode_columns(r.value, Reading)[0] for r in records if r.partition == partition]
        ts = np.concatenate([c.ts_us for c in rows])
        machines = np.concatenate([c.fields["machine_id"] for c in rows])
        assert {partition_for(m.encode(), PARTITIONS) for m in machines} == {partition}
        watermark = ts.max() - 1_000_000
        for size in (5_000_000, 30_000_000):
            pairs = zip(machines.tolist(), ts.tolist(), strict=True)
            windows = {(m, t - t % size) for m, t in pairs}
            count += sum(1 for _, start in windows if start + size + 2_000_000 <= watermark)
    return count


def test_windowed_benchmark_counts_every_reading_and_every_closed_window() -> None:
    result = run_windowed_benchmark(readings=300_000, repeats=1, rows_per_record=20_000)
    windowed, limit = result["windowed_readings_per_s"], result["log_limit_readings_per_s"]
    assert result["windowed_vs_log_limit"] == round(windowed / limit, 3)
    details = result["windowed"]
    assert details["runs"] == [windowed] and details["log_limit_runs"] == [limit]
    assert details["readings"] == 300_000 and details["sensor_rate_hz"] == 100.0
    # _windowed asserts in == processed == readings and out == rows on the features topic.
    assert details["feature_vectors"] == _expected_feature_vectors(300_000, 20_000, 100.0) > 0
    assert 18.5 < details["bytes_per_reading"] < 20.0


def test_bench_runtime_json_has_the_windowed_keys() -> None:
    out = CliRunner().invoke(
        app,
        ["bench", "runtime", "--json", "--events", "2000", "--repeats", "1",
         "--readings", "120000", "--readings-per-record", "20000", "--sensor-hz", "20"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    for key in ("end_to_end_events_per_s", "sqlite_append_rows_per_s", "log_read_rows_per_s"):
        assert isinstance(result[key], int)
    assert result["windowed_vs_log_limit"] == round(
        result["windowed_readings_per_s"] / result["log_limit_readings_per_s"], 3
    )
    assert result["windowed"]["sensor_rate_hz"] == 20.0
    assert result["windowed"]["feature_vectors"] == _expected_feature_vectors(120_000, 20_000, 20)


def test_too_few_readings_to_close_a_window_is_one_clear_error() -> None:
    """10,000 readings at 100 Hz span 0.3 s of event time: no window closes, and the run says
    so naming the option (it used to end in an assertion)."""
    with pytest.raises(ValueError, match=r"--readings 10000: at --sensor-hz 100 that is 0\.3 s"):
        run_windowed_benchmark(readings=10_000, repeats=1)
