"""Every CLI failure is one line (issue 7, items 9, 10 and 11 `--speed nan`).

The real ``wearwatch`` command runs in a subprocess against real faults: a full disk (a tiny
tmpfs where this machine lets us mount one, and always a file-size limit), a read-only data
directory (as an unprivileged user when the tests run as root, since root ignores
permissions), garbage or corrupt log files, a directory given as the log, absurd numbers. Each
must exit non-zero with at most two lines on stderr, the first ``error: ...`` naming what to fix,
and no traceback.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer

from wearwatch.bus.base import OutRecord, pack_by_partition, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.cli import app, main
from wearwatch.events import encode
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.worker import Worker, WorkerOptions
from wearwatch.twin.synthetic import synthetic_readings

WORKER = ["worker", "reading_totals", "--param", "ttl_s=0.5", "--exit-when-idle", "--quiet"]
#: Readings for the full-disk runs: their outputs need well over the space left to the worker.
READINGS = 40_000


def _cli(
    args: list[str],
    data_dir: Path,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    prefix: list[str] | None = None,
    timeout: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WEARWATCH_")}
    base.update(WEARWATCH_DATA_DIR=str(data_dir), COLUMNS="200", **(env or {}))
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "wearwatch", *args],
        env=base,
        cwd=data_dir.parent if data_dir.parent.is_dir() else "/",
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def _one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The failure's single line, after checking the contract; ``names`` must all appear."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: "), lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _fill(path: Path, n: int = 20_000) -> SqliteLog:
    log = SqliteLog(path)
    log.create_topic(READINGS_TOPIC, 4)
    events = synthetic_readings(n, seed=4)
    log.produce(
        pack_by_partition(
            READINGS_TOPIC, events, lambda e: f"{e.machine_id}/{e.sensor}", 4, encode, 100
        )
    )
    return log


def _totals(log: SqliteLog) -> Counter[tuple[str, bytes]]:
    if TOTALS_TOPIC not in log.topics():
        return Counter()
    return Counter((r.rid, r.value) for r in read_all(log, TOTALS_TOPIC))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Counter[tuple[str, bytes]]:
    """The outputs of an uninterrupted run over the same input."""
    log = _fill(tmp_path_factory.mktemp("reference") / "log.db", READINGS)
    Worker(
        log,
        ReadingTotalsOperator(ttl_s=0.5),
        "reading_totals",
        WorkerOptions(exit_when_idle=True, poll_timeout_s=0.0),
    ).run(install_signals=False)
    return _totals(log)


# -- full disks ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where``: a disk that fills up with ENOSPC, like a real one."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill_disk(where: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``where`` but ``leave_bytes``; returns the filler file."""
    filler = where / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while shutil.disk_usage(where).free > leave_bytes:
            f.write(b"\0" * min(65536, shutil.disk_usage(where).free - leave_bytes))
            f.flush()
    return filler


def _file_size_limit(limit: int) -> Callable[[], None]:
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_worker_on_a_full_disk_stops_with_one_line_and_resumes_exactly_once(
    tmp_path: Path, reference: Counter[tuple[str, bytes]]
) -> None:
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        _fill(disk / "log.db", READINGS).close()
        # Room to start (create its topics), not to commit its outputs.
        filler = _fill_disk(disk, leave_bytes=128 * 1024)
        result = _cli(WORKER, disk)
        _one_line(result, str(disk / "log.db"), "database or disk is full", "free space")
        filler.unlink()
        log = SqliteLog(disk / "log.db")
        assert TOTALS_TOPIC in log.topics()  # it had started...
        assert _totals(log) != reference  # ...and stopped part-way through
        assert _cli(WORKER, disk).returncode == 0
        assert _totals(log) == reference
        log.close()


def test_worker_past_a_file_size_limit_stops_with_one_line_and_resumes_exactly_once(
    tmp_path: Path, reference: Counter[tuple[str, bytes]]
) -> None:
    data = tmp_path / "data"
    log = _fill(data / "log.db", READINGS)
    result = _cli(WORKER, data, preexec_fn=_file_size_limit(96 * 1024))
    _one_line(result, str(data / "log.db"), "disk I/O error", "file size limit")
    assert TOTALS_TOPIC in log.topics()
    assert _totals(log) != reference
    assert _cli(WORKER, data).returncode == 0
    assert _totals(log) == reference


def test_twin_on_a_full_disk_stops_with_one_line(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "512k") as disk:  # 10 h of twin take about 1 MB
        result = _cli(["twin", "mill", "--duration", "10h"], disk)
        _one_line(result, str(disk / "log.db"), "database or disk is full")
        (disk / "log.db").unlink()
        out = _cli(["twin", "mill", "--duration", "10h", "--out", str(disk / "e.jsonl")], disk)
        _one_line(out, f"--out {disk / 'e.jsonl'}", "No space left on device")


def test_twin_past_a_file_size_limit_stops_with_one_line(tmp_path: Path) -> None:
    data, lines = tmp_path / "data", tmp_path / "e.jsonl"
    limit = _file_size_limit(64 * 1024)  # 2 h of twin take about 200 kB
    result = _cli(["twin", "mill", "--duration", "2h"], data, preexec_fn=limit)
    _one_line(result, str(data / "log.db"), "disk I/O error")
    out = _cli(["twin", "mill", "--duration", "2h", "--out", str(lines)], data, preexec_fn=limit)
    _one_line(out, f"--out {lines}", "File too large")
    assert _cli(["twin", "mill", "--duration", "2h", "--out", str(lines)], data).returncode == 0
    assert lines.stat().st_size > 64 * 1024  # the limit was what stopped it


# -- read-only data directory --------------------------------------------------------------------


@pytest.fixture(scope="module")
def unprivileged() -> list[str]:
    """A command prefix running as a user that permissions apply to: root ignores them, so
    under root it is ``nobody`` (setpriv keeps the interpreter reachable for it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: root ignores permissions")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import wearwatch"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot run wearwatch as nobody: {probe.stderr.decode()[-200:]}")
    return prefix


@pytest.fixture
def readonly_dirs() -> Iterator[tuple[Path, Path]]:
    """(an empty read-only data dir, a read-only one holding a log), in a world-readable
    temporary directory (pytest's own is private to its user)."""
    root = Path(tempfile.mkdtemp(prefix="wearwatch-ro-"))
    root.chmod(0o755)
    empty, full = root / "empty", root / "full"
    empty.mkdir()
    log = _fill(full / "log.db", n=2000)
    log.create_topic("dead_letters")
    log.produce([OutRecord(READINGS_TOPIC, b"k", b"{}")])
    log.close()
    for d in (empty, full):
        d.chmod(0o555)
    try:
        yield empty, full
    finally:
        for d in (empty, full):
            d.chmod(0o755)
        shutil.rmtree(root)


def _readonly_needles(args: list[str], data_dir: Path) -> tuple[str, ...]:
    """What the one line must name: the worker stops at its checkpoint key file (created
    beside the log before the log is opened); every other command at the log itself."""
    if args == WORKER:
        return (f"checkpoint key file {data_dir / 'log.db.key'}", "writable")
    return (f"embedded log {data_dir / 'log.db'}", "read-only", "writable")


READONLY_COMMANDS = [
    ["log", "topics"],
    ["log", "tail", READINGS_TOPIC],
    ["log", "dead-letters"],
    ["log", "retention"],
    WORKER,
    ["twin", "mill", "--duration", "10m"],
    ["twin", "command", "maintenance"],
]


@pytest.mark.parametrize("args", READONLY_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_readonly_data_dir_holding_a_log_is_one_line_for_every_command(
    readonly_dirs: tuple[Path, Path], unprivileged: list[str], args: list[str]
) -> None:
    _, full = readonly_dirs
    before = sorted(p.name for p in full.iterdir())
    result = _cli(args, full, prefix=unprivileged, timeout=60)
    _one_line(result, *_readonly_needles(args, full))
    assert sorted(p.name for p in full.iterdir()) == before  # nothing was written


@pytest.mark.parametrize("args", [["log", "topics"], WORKER, ["demo", "--passes", "100"]])
def test_an_empty_readonly_data_dir_is_one_line(
    readonly_dirs: tuple[Path, Path], unprivileged: list[str], args: list[str]
) -> None:
    empty, _ = readonly_dirs
    result = _cli(args, empty, prefix=unprivileged, timeout=60)
    if args == WORKER:  # the worker first needs its checkpoint key beside the log
        _one_line(result, *_readonly_needles(args, empty))
    else:
        _one_line(result, "embedded log", str(empty), "WEARWATCH_DATA_DIR")
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("args", [["log", "topics"], WORKER])
def test_a_readonly_filesystem_is_one_line(tmp_path: Path, args: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root")
    data = tmp_path / "data"
    _fill(data / "log.db", n=2000).close()
    if subprocess.run(["mount", "--bind", str(data), str(data)]).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(data)], check=True)
        result = _cli(args, data)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)
    _one_line(result, *_readonly_needles(args, data))


# -- broken log files ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["log", "topics"], ["log", "tail", READINGS_TOPIC], WORKER])
def test_garbage_bytes_as_the_log_are_one_line(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "log.db").write_bytes(bytes(range(256)) * 64)
    result = _cli(args, data)
    _one_line(result, str(data / "log.db"), "file is not a database", "move it aside")


@pytest.mark.parametrize("args", [["log", "topics"], ["log", "tail", READINGS_TOPIC], WORKER])
def test_a_log_with_corrupt_pages_is_one_line(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    _fill(data / "log.db", n=2000).close()
    raw = bytearray((data / "log.db").read_bytes())
    raw[4096:] = bytes(range(256)) * ((len(raw) - 4096) // 256)  # every page after the first
    (data / "log.db").write_bytes(raw)
    result = _cli(args, data)
    _one_line(result, str(data / "log.db"), "malformed", "corrupt")


@pytest.mark.parametrize("args", [["log", "topics"], WORKER])
def test_a_directory_given_as_the_log_is_one_line(tmp_path: Path, args: list[str]) -> None:
    result = _cli(args, tmp_path / "data", env={"WEARWATCH_BUS": f"sqlite:///{tmp_path}"})
    _one_line(result, f"embedded log {tmp_path}:", "is a directory", f"{tmp_path}/log.db")


def test_a_file_given_as_the_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    result = _cli(["log", "topics"], tmp_path / "data")
    _one_line(result, f"cannot create its directory {tmp_path / 'data'}", "WEARWATCH_DATA_DIR")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "log.db").write_bytes(b"garbage" * 1000)
    result = _cli(["log", "topics"], data, env={"WEARWATCH_DEBUG": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "SqliteLogError" in result.stderr


# -- settings (item 9) and absurd numbers ---------------------------------------------------------


def _main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    args: list[str],
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``main()`` in this process, for failures that happen before any work (settings,
    arguments): the same code path as the subprocess runs, at a fraction of the cost."""
    from wearwatch.config import get_settings

    monkeypatch.setenv("WEARWATCH_DATA_DIR", str(data_dir))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["wearwatch", *args])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code, out.out, out.err)


SETTING_CASES = [
    # (setting, value, command, in a subprocess?)
    ("WEARWATCH_RETENTION_S", "inf", ["config", "show"], True),
    ("WEARWATCH_RETENTION_S", "inf", ["log", "retention"], True),
    ("WEARWATCH_RETENTION_S", "inf", WORKER, True),
    ("WEARWATCH_RETENTION_S", "1e300", [*WORKER, "--workers", "2"], True),
    ("WEARWATCH_RETENTION_S", "1e300", ["config", "show"], False),
    ("WEARWATCH_RETENTION_S", "1e300", ["log", "retention"], False),
    ("WEARWATCH_RETENTION_S", "nan", ["log", "topics"], False),
    ("WEARWATCH_RETENTION_S", "-1", ["twin", "mill", "--duration", "1m"], False),
    ("WEARWATCH_CHECKPOINT_INTERVAL_S", "0", WORKER, False),
    ("WEARWATCH_WATERMARK_DELAY_S", "Infinity", WORKER, False),
    ("WEARWATCH_POLL_MAX_RECORDS", "9223372036854775808", WORKER, False),
]


@pytest.mark.parametrize(
    ("name", "value", "args", "subprocess_run"),
    SETTING_CASES,
    ids=[f"{n.removeprefix('WEARWATCH_')}={v} {' '.join(a[:2])}" for n, v, a, _ in SETTING_CASES],
)
def test_a_bad_setting_is_one_line_naming_it_from_every_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
    args: list[str],
    subprocess_run: bool,
) -> None:
    field = name.removeprefix("WEARWATCH_").lower()
    data = tmp_path / "data"
    if subprocess_run:
        result = _cli(args, data, env={name: value})
    else:
        result = _main(monkeypatch, capsys, data, args, env={name: value})
    _one_line(result, f"config {field}={value!r} ({name})")
    assert not data.exists()  # refused before anything was created


NUMBER_CASES = [
    # (command, what the line names, in a subprocess?)
    (["log", "tail", READINGS_TOPIC, "-n", "9223372036854775808"], ["'-n'", "1000000"], True),
    (["twin", "mill", "--speed", "nan"], ["'--speed'", "nan: expected a finite number"], True),
    (["log", "tail", READINGS_TOPIC, "-n", "0"], ["'-n'", "greater than or equal to 1"], False),
    (["log", "tail", READINGS_TOPIC, "-n", "-5"], ["'-n'", "greater than or equal to 1"], False),
    (["log", "dead-letters", "-n", "99999999999999999999"], ["'-n'", "1000000"], False),
    (["twin", "mill", "--speed", "inf"], ["'--speed'", "inf: expected a finite number"], False),
    (["twin", "mill", "--speed", "-1"], ["'--speed'", "-1.0: expected a number >= 0"], False),
    (["twin", "mill", "--duration", "1" + "0" * 400 + "h"], ["--duration", "1000 years"], False),
    ([*WORKER, "--param", "ttl_s=NaN"], ["--param 'ttl_s=NaN'", "finite"], False),
    ([*WORKER, "--param", "ttl_s=1e400"], ["--param 'ttl_s=1e400'", "finite"], False),
]


@pytest.mark.parametrize(
    ("args", "names", "subprocess_run"),
    NUMBER_CASES,
    ids=[" ".join(a)[:50] for a, _, _ in NUMBER_CASES],
)
def test_absurd_numbers_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    names: list[str],
    subprocess_run: bool,
) -> None:
    data = tmp_path / "data"
    result = _cli(args, data) if subprocess_run else _main(monkeypatch, capsys, data, args)
    _one_line(result, *names)
    assert not data.exists()


# -- log tail shows any record -------------------------------------------------------------------


def test_log_tail_shows_records_that_are_not_displayable_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = SqliteLog(data / "log.db")
    log.create_topic("raw", 1)
    values = [
        b'{"sensor": "\xff"}',  # invalid UTF-8 inside a JSON string
        b"[" * 10_000 + b"]" * 10_000,  # 10,000 levels deep
        b"\x00" * 1000,  # binary
        b'{"ok": [1, 2]}',
    ]
    log.produce(OutRecord("raw", b"k", v, "", 0) for v in values)
    log.close()
    result = _cli(["log", "tail", "raw", "-n", "10"], data)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    head = '{"partition": 0, "offset": %d, "rid": ""'
    assert lines == [
        head % 0 + ', "raw": "b\'{\\"sensor\\": \\"\\\\xff\\"}\'"}',
        head % 1 + ', "raw": "b\'' + "[" * 398 + '... (20,000 bytes)"}',
        head % 2 + ', "raw": "b\'' + "\\\\x00" * 99 + '\\\\x... (1,000 bytes)"}',
        head % 3 + ', "value": {"ok": [1, 2]}}',
    ]


# -- every float option of the CLI refuses nan and inf -------------------------------------------


def _float_params() -> list[tuple[list[str], str, list[str]]]:
    """(command path, the float parameter as typed, argv for the other required params)."""
    import typing

    found = []

    def walk(command: object, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        callback = getattr(command, "callback", None)
        if callback is None or getattr(command, "commands", None):
            return
        hints = typing.get_type_hints(callback)
        for param in command.params:  # type: ignore[attr-defined]
            if hints.get(param.name) not in (float, float | None):
                continue
            others: list[str] = []
            for other in command.params:  # type: ignore[attr-defined]
                if other is param or not other.required:
                    continue
                filler = "0.1" if hints.get(other.name) is float else "1m"
                others += (
                    [filler] if other.param_type_name == "argument" else [other.opts[0], filler]
                )
            typed = param.opts[0] if param.param_type_name == "option" else ""
            found.append((path, typed, others))

    walk(typer.main.get_command(app), [])
    return found


FLOAT_PARAMS = _float_params()


def test_the_float_options_are_found() -> None:
    typed = {(" ".join(path), name) for path, name, _ in FLOAT_PARAMS}
    assert {("twin mill", "--speed"), ("twin mill", "--loss"), ("twin command set-wear", "")} <= (
        typed
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("path", "typed", "others"),
    FLOAT_PARAMS,
    ids=[f"{' '.join(p)} {t}" for p, t, _ in FLOAT_PARAMS],
)
def test_every_float_option_refuses_non_finite_values_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    path: list[str],
    typed: str,
    others: list[str],
    value: str,
) -> None:
    given = [f"{typed}={value}"] if typed else ["--", value]
    result = _main(monkeypatch, capsys, tmp_path / "data", [*path, *others, *given])
    line = _one_line(result, "Invalid value for ", "expected a finite number")
    assert f"{value}:" in line
    assert not (tmp_path / "data").exists()
