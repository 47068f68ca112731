"""The architecture contract (``[tool.importlinter]`` in pyproject.toml) holds, and bites.

``lint-imports`` runs in ``make lint`` and ``make test``; these tests make plain ``pytest``
enforce it too, and show on a copy of the package that each rule rejects the import it is
there to reject (a contract that cannot fail would pass just as quietly).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
NAMES = {contract["id"]: contract["name"] for contract in CONTRACTS}


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env["COLUMNS"] = "400"  # one line per contract in the report
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _verdicts(output: str) -> dict[str, str]:
    """Contract id -> KEPT or BROKEN, from the report's summary lines."""
    found = {}
    for cid, name in NAMES.items():
        match = re.search(rf"^{re.escape(name)} (KEPT|BROKEN)", output, re.MULTILINE)
        assert match, f"contract {cid!r} missing from the report:\n{output}"
        found[cid] = match.group(1)
    return found


def test_the_package_keeps_every_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _verdicts(result.stdout) == dict.fromkeys(NAMES, "KEPT")
    assert f"Contracts: {len(NAMES)} kept, 0 broken." in result.stdout


#: A module added to a copy of the package -> the contracts it must break, and a line of the
#: report that names the offending import.
PROBES = {
    "upward import (bus -> pipelines)": (
        "bus/probe.py",
        "import wearwatch.pipelines\n",
        {"layers"},
        "wearwatch.bus.probe -> wearwatch.pipelines",
    ),
    "runtime reads settings": (
        "runtime/probe.py",
        "def f():\n    from wearwatch.config import get_settings\n\n    return get_settings()\n",
        {"layers", "settings"},
        "wearwatch.runtime.probe -> wearwatch.config",
    ),
    "settings reached indirectly (store -> cli -> config)": (
        "store/probe.py",
        "import wearwatch.cli.worker\n",
        {"layers", "settings"},
        "wearwatch.store.probe -> wearwatch.cli.worker",
    ),
    "twin imports the runtime (allowed by the layers alone)": (
        "twin/probe.py",
        "from wearwatch.runtime.worker import Worker\n",
        {"twins"},
        "wearwatch.twin.probe -> wearwatch.runtime.worker",
    ),
    "learn imports a twin": (
        "learn/probe.py",
        "from wearwatch.twin.mill.simulation import MillTwin\n",
        {"layers"},
        "wearwatch.learn.probe -> wearwatch.twin.mill.simulation",
    ),
    "physics and events are independent": (
        "physics/probe.py",
        "import wearwatch.events\n",
        {"layers"},
        "wearwatch.physics.probe -> wearwatch.events",
    ),
    "a new package nobody layered": (
        "gateway/__init__.py",
        '"""A package nobody added to the layers."""\n',
        {"layers"},
        "wearwatch.gateway",
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, probe: str) -> None:
    relpath, source, broken, named = PROBES[probe]
    copy = tmp_path / "src" / "wearwatch"
    shutil.copytree(ROOT / "src" / "wearwatch", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (copy / relpath).parent.mkdir(exist_ok=True)
    (copy / relpath).write_text(source)

    # PYTHONPATH comes before the editable install on sys.path, so the copy is what is analysed
    # (the probe's name in the report proves it).
    result = _lint_imports(tmp_path, pythonpath=tmp_path / "src")

    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    expected = {cid: "BROKEN" if cid in broken else "KEPT" for cid in NAMES}
    assert _verdicts(result.stdout) == expected, report
    assert named in report
