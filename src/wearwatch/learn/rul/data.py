"""Loading NASA's C-MAPSS turbofan data (FD001–FD004) and finding where it lives.

The files are NASA PCoE's "Turbofan Engine Degradation Simulation Data Set" (Saxena et al.,
PHM08): ``train_FD00x.txt`` (run to failure), ``test_FD00x.txt`` (cut before failure) and
``RUL_FD00x.txt`` (true RUL after each test unit's last cycle). Space separated, no header,
trailing spaces, 26 columns: unit, cycle, three operational settings, 21 sensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SUBSETS: tuple[str, ...] = ("FD001", "FD002", "FD003", "FD004")
OP_SETTINGS: list[str] = [f"op_setting_{i}" for i in range(1, 4)]
SENSORS: list[str] = [f"sensor_{i}" for i in range(1, 22)]
COLUMNS: list[str] = ["unit", "cycle", *OP_SETTINGS, *SENSORS]

#: Operating conditions per subset (Saxena et al. 2008): FD002 and FD004 mix six regimes.
N_CONDITIONS: dict[str, int] = {"FD001": 1, "FD002": 6, "FD003": 1, "FD004": 6}

DOWNLOAD_URL = "https://www.nasa.gov/intelligent-systems-division/discovery-and-systems-health/pcoe/pcoe-data-set-repository/"


def required_files(subset: str) -> list[str]:
    return [f"train_{subset}.txt", f"test_{subset}.txt", f"RUL_{subset}.txt"]


def missing_hint(directory: Path, subsets: Iterable[str]) -> str:
    """The one-line explanation for a user who does not have the files."""
    names = ", ".join(name for s in subsets for name in required_files(s))
    return (
        f"C-MAPSS data not found in {directory}: download the 'Turbofan Engine Degradation "
        f"Simulation Data Set' zip (CMAPSSData.zip) from the NASA PCoE Prognostics Data "
        f"Repository ({DOWNLOAD_URL}), unzip it and point --data or WEARWATCH_CMAPSS_DIR at "
        f"a directory holding {names}"
    )


def missing_files(directory: Path, subsets: Iterable[str]) -> list[str]:
    return [name for s in subsets for name in required_files(s) if not (directory / name).is_file()]


def default_data_dir(configured: Path | str | None = None) -> Path:
    """``configured`` (the app passes its ``cmapss_dir`` setting), else
    ``<checkout>/../shared/data/cmapss``, else cwd-relative.

    >>> default_data_dir("/data/cmapss")
    PosixPath('/data/cmapss')
    """
    if configured is not None:
        return Path(configured)
    # src/wearwatch/learn/rul/data.py -> parents[4] is the repository root.
    repo_root = Path(__file__).resolve().parents[4]
    candidate = repo_root.parent / "shared" / "data" / "cmapss"
    if candidate.is_dir():
        return candidate
    return Path("..") / "shared" / "data" / "cmapss"


def read_table(path: Path) -> pd.DataFrame:
    """One train/test file as a frame with :data:`COLUMNS`, sorted by unit and cycle."""
    frame = pd.read_csv(path, sep=r"\s+", header=None, names=COLUMNS, index_col=False)
    if frame.shape[1] != len(COLUMNS) or frame.isna().any().any():
        raise ValueError(f"{path}: expected {len(COLUMNS)} numeric columns per row")
    frame["unit"] = frame["unit"].astype(np.int64)
    frame["cycle"] = frame["cycle"].astype(np.int64)
    return frame.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)


def add_train_rul(frame: pd.DataFrame) -> pd.DataFrame:
    """Run-to-failure RUL of each row: the unit's last cycle minus the row's cycle."""
    out = frame.copy()
    out["rul"] = out.groupby("unit")["cycle"].transform("max") - out["cycle"]
    return out


@dataclass(frozen=True)
class CmapssSubset:
    name: str
    train: pd.DataFrame  # with a "rul" column (uncapped)
    test: pd.DataFrame
    test_rul: np.ndarray  # true RUL after each test unit's last cycle, in unit order
    train_sha256: str


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_subset(directory: Path, subset: str) -> CmapssSubset:
    if subset not in SUBSETS:
        raise ValueError(f"unknown C-MAPSS subset {subset!r}; expected one of {SUBSETS}")
    directory = Path(directory)
    missing = missing_files(directory, [subset])
    if missing:
        raise FileNotFoundError(missing_hint(directory, [subset]))
    train_path = directory / f"train_{subset}.txt"
    train = add_train_rul(read_table(train_path))
    test = read_table(directory / f"test_{subset}.txt")
    test_rul = np.loadtxt(directory / f"RUL_{subset}.txt", dtype=np.float64, ndmin=1)
    n_units = test["unit"].nunique()
    if len(test_rul) != n_units:
        raise ValueError(f"RUL_{subset}.txt has {len(test_rul)} values for {n_units} test units")
    return CmapssSubset(subset, train, test, test_rul, file_sha256(train_path))
