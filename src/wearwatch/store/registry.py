"""A file-system model registry: versioned artifacts, checksums, an atomic ``current`` pointer.

Layout under the root (the app passes ``<data_dir>/models``, the ``registry_dir`` setting)::

    <root>/<family>/v0001/<artifacts>   the model, in a format that cannot run code (below)
    <root>/<family>/v0001/meta.json     format, params, metrics, data hash, code version,
                                        sha256 per artifact
    <root>/<family>/current.json        {"version": 3, "stack": [1, 3], "history": [...]}

* Nothing is pickled. Loading a pickle runs whatever code its bytes name, and a checksum stored
  next to the artifact protects nothing against whoever can rewrite both. So a version is stored
  as data only: JSON values as ``model.json`` (format ``json``); a RUL model (format
  ``rul-model/1``) as JSON parameters, LightGBM's text model and, for multi-regime subsets,
  scikit-learn's KMeans in ``skops`` format (loaded with skops' default trusted types only).
  ``meta.json`` merely selects one of these fixed loaders; an unknown format, or a version
  pickled by wearwatch 0.1, is refused with a one-line error.

* A version directory is written under a temporary name and renamed into place, so a version
  either exists completely or not at all.
* ``current.json`` is replaced atomically (temp file + fsync + ``os.replace``): a reader sees the
  old pointer or the new one, never a partial file. Writers serialise on a ``flock``.
* Before *any* load every artifact's sha256 is compared with the one recorded at registration;
  on mismatch :class:`ChecksumMismatch` is raised and nothing is decoded. The bytes that are
  hashed are the very bytes that are decoded (no re-read in between). The checksum protects
  against corruption and accidental edits; against an attacker who can also rewrite
  ``meta.json`` the protection is that no stored format can execute code.
* ``promote`` pushes a version on the pointer's stack; ``rollback`` pops it, so ``current``
  returns to the version that was current before. Every action is kept in ``history``.
* A **rollout** (:mod:`wearwatch.store.rollout`: a candidate in shadow or canary beside the
  current version) lives in the same pointer file, so the current version and the rollout
  change together atomically. At most one per family; ``promote`` of the candidate finishes
  it, ``abort_rollout`` ends it, and a promote or rollback of another version is refused while
  it runs (the comparison would lose its reference).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wearwatch.store.rollout import Rollout, RolloutMode

try:  # POSIX advisory locks for writers; readers never need them.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX platforms
    fcntl = None  # type: ignore[assignment]

JSON_ARTIFACT = "model.json"
JSON_FORMAT = "json"
LEGACY_PICKLE = "model.pkl"
META = "meta.json"
POINTER = "current.json"
_FAMILY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ARTIFACT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION_DIR_RE = re.compile(r"^v(\d{4,})$")

#: Formats stored by a class of ours: format -> "module:Class" with ``artifact_format``,
#: ``to_artifacts() -> dict[str, bytes]`` and ``from_artifacts(files)``. A fixed table: meta.json
#: only picks an entry, so it can never make the registry import or run anything else.
MODEL_FORMATS: dict[str, str] = {
    "rul-model/1": "wearwatch.learn.rul.model:RulModel",
    "risk-model/1": "wearwatch.learn.risk.model:RiskModel",
    "anomaly-model/1": "wearwatch.learn.anomaly.model:AnomalyModel",
}


class RegistryError(Exception):
    """Base class of registry errors; the message is one line meant for a human."""


class UnknownFamily(RegistryError, LookupError):
    pass


class UnknownVersion(RegistryError, LookupError):
    pass


class RolloutError(RegistryError, ValueError):
    """A rollout that cannot start, or an action a running rollout forbids."""


class UnsupportedArtifact(RegistryError, TypeError):
    """An object the registry cannot store, or a stored format it will not load."""


class ChecksumMismatch(RegistryError):
    """An artifact's bytes do not hash to the sha256 recorded when it was registered."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {self.path}: expected sha256 {expected}, got {actual}; "
            "refusing to load"
        )


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN: e.g. ROC-AUC on a single-class test set)
    turned into None, through dicts and lists: strict JSON has no NaN.

    >>> finite_json({"auc": float("nan"), "n": [1.0, float("inf")]})
    {'auc': None, 'n': [1.0, None]}
    """
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def code_version() -> dict[str, str | None]:
    from wearwatch import __version__

    return {"wearwatch": __version__, "git_commit": _git_commit()}


def parse_version(value: int | str) -> int:
    """``3``, ``"3"``, ``"v3"`` and ``"v0003"`` all mean version 3."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower().removeprefix("v")
        if not text.isdigit():
            raise UnknownVersion(f"bad version {value!r}: expected a number like 3 or v0003")
        number = int(text)
    if number < 1:
        raise UnknownVersion(f"bad version {value!r}: versions start at 1")
    return number


def version_tag(number: int) -> str:
    return f"v{number:04d}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class ModelVersion:
    family: str
    version: int
    created_at: str
    data_hash: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: dict[str, str | None] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    object_type: str = ""
    path: Path = Path()
    format: str = ""  # "" for versions pickled by wearwatch 0.1 (never loaded)

    @property
    def tag(self) -> str:
        return version_tag(self.version)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["tag"] = self.tag
        return out


class ModelRegistry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------- paths & validation
    def _family_dir(self, family: str) -> Path:
        if not isinstance(family, str) or not _FAMILY_RE.match(family):
            raise UnknownFamily(
                f"bad model family name {family!r}: use letters, digits, '.', '_' or '-'"
            )
        return self.root / family

    def _existing_family_dir(self, family: str) -> Path:
        path = self._family_dir(family)
        if not path.is_dir() or not self._version_numbers(path):
            known = ", ".join(self.families()) or "none registered yet"
            raise UnknownFamily(f"unknown model family {family!r} (known: {known})")
        return path

    @staticmethod
    def _version_numbers(family_dir: Path) -> list[int]:
        numbers = []
        with contextlib.suppress(FileNotFoundError):
            for child in family_dir.iterdir():
                match = _VERSION_DIR_RE.match(child.name)
                if match and (child / META).is_file():
                    numbers.append(int(match.group(1)))
        return sorted(numbers)

    @contextlib.contextmanager
    def _lock(self, family_dir: Path) -> Iterator[None]:
        family_dir.mkdir(parents=True, exist_ok=True)
        with open(family_dir / ".lock", "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ----------------------------------------------------------------- reading metadata
    def families(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            child.name
            for child in self.root.iterdir()
            if child.is_dir() and _FAMILY_RE.match(child.name) and self._version_numbers(child)
        )

    def _read_meta(self, family: str, number: int) -> ModelVersion:
        vdir = self._family_dir(family) / version_tag(number)
        try:
            raw = json.loads((vdir / META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnknownVersion(
                f"model {family!r} has no version {version_tag(number)} "
                f"(known: {', '.join(map(version_tag, self._version_numbers(vdir.parent)))})"
            ) from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{vdir / META} is not valid JSON: {exc}") from None
        return ModelVersion(
            family=raw["family"],
            version=int(raw["version"]),
            created_at=raw["created_at"],
            data_hash=raw.get("data_hash", ""),
            params=raw.get("params", {}),
            metrics=raw.get("metrics", {}),
            code_version=raw.get("code_version", {}),
            artifacts=raw.get("artifacts", {}),
            object_type=raw.get("object_type", ""),
            path=vdir,
            format=str(raw.get("format", "")),
        )

    def pointer(self, family: str) -> dict[str, Any]:
        """The parsed ``current.json`` of a family (empty pointer if never promoted)."""
        path = self._family_dir(family) / POINTER
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": None, "stack": [], "history": [], "rollout": None}
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} is corrupt ({exc}); restore it from history") from None
        if not isinstance(data, dict) or "version" not in data:
            raise RegistryError(f"{path} is corrupt: no 'version' key")
        data.setdefault("stack", [] if data["version"] is None else [data["version"]])
        data.setdefault("history", [])
        data.setdefault("rollout", None)
        return data

    def rollout(self, family: str) -> Rollout | None:
        """The family's running rollout (None: none)."""
        data = self.pointer(family)["rollout"]
        try:
            return None if data is None else Rollout.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"{self._family_dir(family) / POINTER}: corrupt rollout {data!r} ({exc})"
            ) from None

    def current_version(self, family: str) -> int | None:
        version = self.pointer(family)["version"]
        return None if version is None else int(version)

    def list(self, family: str | None = None) -> list[ModelVersion]:
        families = [family] if family is not None else self.families()
        out: list[ModelVersion] = []
        for name in families:
            family_dir = self._existing_family_dir(name)
            out.extend(self._read_meta(name, n) for n in self._version_numbers(family_dir))
        return out

    def show(self, family: str, version: int | str | None = None) -> ModelVersion:
        """One version's metadata; ``None`` means the current one (or the latest if none is)."""
        family_dir = self._existing_family_dir(family)
        if version is None:
            number = self.current_version(family)
            if number is None:
                number = self._version_numbers(family_dir)[-1]
        else:
            number = parse_version(version)
        return self._read_meta(family, number)

    # ----------------------------------------------------------------- writing
    def register(
        self,
        family: str,
        obj: Any,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        data_hash: str = "",
        promote: bool = False,
    ) -> ModelVersion:
        """Store ``obj`` as the next version of ``family`` (and make it current if ``promote``)."""
        family_dir = self._family_dir(family)
        fmt, files = _encode(obj)
        family_dir.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "family": family,
            "created_at": _utcnow(),
            "data_hash": data_hash,
            "params": params or {},
            "metrics": finite_json(metrics or {}),
            "code_version": code_version(),
            "format": fmt,
            "artifacts": {name: sha256_bytes(data) for name, data in sorted(files.items())},
            "object_type": f"{type(obj).__module__}.{type(obj).__qualname__}",
        }
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=family_dir))
        try:
            for name, data in files.items():
                with open(staging / name, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            with self._lock(family_dir):
                numbers = self._version_numbers(family_dir)
                number = (numbers[-1] if numbers else 0) + 1
                meta["version"] = number
                (staging / META).write_text(
                    json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8"
                )
                os.rename(staging, family_dir / version_tag(number))
                _fsync_dir(family_dir)
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        if promote:
            self.promote(family, number)
        return self._read_meta(family, number)

    def _write_pointer(self, family_dir: Path, pointer: dict[str, Any]) -> None:
        if pointer.get("rollout") is None:  # no rollout: the pointer file as before rollouts
            pointer = {k: v for k, v in pointer.items() if k != "rollout"}
        data = json.dumps(pointer, indent=2, sort_keys=True).encode("utf-8")
        atomic_write_bytes(family_dir / POINTER, data)

    def promote(self, family: str, version: int | str, *, forced: bool = False) -> ModelVersion:
        """Make ``version`` current. With a rollout running, only its candidate may be promoted
        (which finishes the rollout); ``forced`` records that a failed gate was overridden."""
        family_dir = self._existing_family_dir(family)
        number = parse_version(version)
        mv = self._read_meta(family, number)  # raises UnknownVersion
        with self._lock(family_dir):
            pointer = self.pointer(family)
            rollout = self.rollout(family)
            if rollout is not None and rollout.version != number:
                raise RolloutError(
                    f"model {family!r}: a rollout of {version_tag(rollout.version)} "
                    f"({rollout.describe()}) is running; promote it or abort it first "
                    f"(wearwatch models rollout {family} --abort)"
                )
            if pointer["version"] == number:
                return mv
            stack = [int(v) for v in pointer["stack"]]
            stack.append(number)
            entry: dict[str, Any] = {
                "action": "promote",
                "version": number,
                "from": pointer["version"],
                "at": _utcnow(),
            }
            if rollout is not None:
                entry["rollout"] = rollout.describe()
            if forced:
                entry["forced"] = True
            history = [*pointer["history"], entry]
            self._write_pointer(
                family_dir, {"version": number, "stack": stack, "history": history, "rollout": None}
            )
        return mv

    def rollback(self, family: str) -> ModelVersion:
        """Make the previously current version current again (refused during a rollout)."""
        family_dir = self._existing_family_dir(family)
        with self._lock(family_dir):
            pointer = self.pointer(family)
            rollout = self.rollout(family)
            if rollout is not None:
                raise RolloutError(
                    f"model {family!r}: a rollout of {version_tag(rollout.version)} is running; "
                    f"abort it first (wearwatch models rollout {family} --abort)"
                )
            stack = [int(v) for v in pointer["stack"]]
            if len(stack) < 2:
                raise RegistryError(
                    f"model {family!r}: nothing to roll back to "
                    f"(current: {version_tag(stack[-1]) if stack else 'none'})"
                )
            previous = stack[-2]
            mv = self._read_meta(family, previous)
            history = [
                *pointer["history"],
                {"action": "rollback", "version": previous, "from": stack[-1], "at": _utcnow()},
            ]
            self._write_pointer(
                family_dir,
                {"version": previous, "stack": stack[:-1], "history": history, "rollout": None},
            )
        return mv

    def start_rollout(
        self, family: str, version: int | str, mode: RolloutMode, share: float | None = None
    ) -> Rollout:
        """Run ``version`` beside the current one: ``shadow``, or ``canary`` serving ``share``
        of the machines (see :mod:`wearwatch.store.rollout`). The version must exist and pass
        its checksum, the family must have a current version (the reference) other than it,
        and no other rollout may be running."""
        family_dir = self._existing_family_dir(family)
        number = parse_version(version)
        try:
            plan = Rollout(number, mode, share, _utcnow())
        except ValueError as exc:
            raise RolloutError(f"model {family!r} rollout: {exc}") from None
        self.verify(family, number)  # exists, a loadable format, checksums match
        with self._lock(family_dir):
            pointer = self.pointer(family)
            running = self.rollout(family)
            if running is not None:
                raise RolloutError(
                    f"model {family!r}: a rollout of {version_tag(running.version)} "
                    f"({running.describe()}) is already running; one per family: abort it first"
                )
            if pointer["version"] is None:
                raise RolloutError(
                    f"model {family!r} has no current version to compare a rollout with; "
                    "promote one first"
                )
            if int(pointer["version"]) == number:
                raise RolloutError(f"model {family!r}: {version_tag(number)} is already current")
            history = [
                *pointer["history"],
                {
                    "action": "rollout",
                    "version": number,
                    "from": pointer["version"],
                    "mode": plan.mode,
                    "share": plan.share,
                    "at": plan.started_at,
                },
            ]
            self._write_pointer(
                family_dir, {**pointer, "history": history, "rollout": plan.to_dict()}
            )
        return plan

    def abort_rollout(self, family: str) -> Rollout:
        """End the running rollout; the current version serves every machine again."""
        family_dir = self._existing_family_dir(family)
        with self._lock(family_dir):
            pointer = self.pointer(family)
            running = self.rollout(family)
            if running is None:
                raise RolloutError(f"model {family!r}: no rollout is running")
            history = [
                *pointer["history"],
                {
                    "action": "abort",
                    "version": running.version,
                    "from": pointer["version"],
                    "mode": running.mode,
                    "share": running.share,
                    "at": _utcnow(),
                },
            ]
            self._write_pointer(family_dir, {**pointer, "history": history, "rollout": None})
        return running

    # ----------------------------------------------------------------- loading
    def _verified_files(self, mv: ModelVersion) -> dict[str, bytes]:
        """Every recorded artifact, each checked against its recorded sha256."""
        if not mv.artifacts:
            raise RegistryError(f"{mv.path / META} records no artifacts")
        files: dict[str, bytes] = {}
        for name, expected in mv.artifacts.items():
            if not isinstance(name, str) or not _ARTIFACT_RE.match(name) or name == META:
                raise RegistryError(f"{mv.path / META} names a bad artifact {name!r}")
            path = mv.path / name
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise RegistryError(f"artifact missing: {path}") from None
            actual = sha256_bytes(data)
            if actual != expected:
                raise ChecksumMismatch(path, str(expected), actual)
            files[name] = data
        return files

    def verify(self, family: str, version: int | str | None = None) -> ModelVersion:
        """Check a version's artifacts against their recorded sha256 without loading them."""
        mv = self._resolve(family, version)
        _check_format(mv)
        self._verified_files(mv)
        return mv

    def _resolve(self, family: str, version: int | str | None) -> ModelVersion:
        self._existing_family_dir(family)
        if version is None:
            number = self.current_version(family)
            if number is None:
                raise RegistryError(f"model {family!r} has no current version; promote one first")
        else:
            number = parse_version(version)
        return self._read_meta(family, number)

    def load(self, family: str, version: int | str | None = None) -> Any:
        """The object of ``version`` (``None``: the current one), after checksum verification."""
        return self.load_with_meta(family, version)[0]

    def load_with_meta(
        self, family: str, version: int | str | None = None
    ) -> tuple[Any, ModelVersion]:
        mv = self._resolve(family, version)
        _check_format(mv)
        files = self._verified_files(mv)
        try:
            return _decode(mv.format, files), mv
        except Exception as exc:  # whatever the bytes are, they only ever fail as data
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise RegistryError(
                f"model {mv.family} {mv.tag}: its {mv.format} artifacts do not load "
                f"({type(exc).__name__}: {detail})"
            ) from None


def _check_format(mv: ModelVersion) -> None:
    """Refuse, before reading any artifact, a version no fixed loader can read."""
    if mv.format == JSON_FORMAT or mv.format in MODEL_FORMATS:
        return
    if not mv.format and LEGACY_PICKLE in mv.artifacts:
        raise UnsupportedArtifact(
            f"model {mv.family} {mv.tag} is a pickle (wearwatch 0.1); pickles are not loaded, "
            "as they can run code: train and register it again"
        )
    raise UnsupportedArtifact(f"model {mv.family} {mv.tag}: unknown format {mv.format!r}")


def _encode(obj: Any) -> tuple[str, dict[str, bytes]]:
    """(format, artifact name -> bytes) for an object the registry can store without pickle."""
    fmt = getattr(type(obj), "artifact_format", None)
    if (
        fmt in MODEL_FORMATS
        and MODEL_FORMATS[fmt] == f"{type(obj).__module__}:{type(obj).__name__}"
    ):
        files = dict(obj.to_artifacts())
        bad = [n for n in files if not _ARTIFACT_RE.match(n) or n == META]
        if bad:
            raise UnsupportedArtifact(f"{fmt}: bad artifact names {bad}")
        return fmt, files
    try:
        text = json.dumps(obj, allow_nan=False, sort_keys=True)
        same = json.loads(text) == obj
    except (TypeError, ValueError):
        same = False
    if not same:
        raise UnsupportedArtifact(
            f"cannot register a {type(obj).__module__}.{type(obj).__qualname__}: the registry "
            "stores JSON values (dicts with str keys, lists, str, finite numbers, bool, None) or "
            f"a model with a data-only format ({', '.join(sorted(MODEL_FORMATS))}), never pickles"
        )
    return JSON_FORMAT, {JSON_ARTIFACT: text.encode("utf-8")}


def _decode(fmt: str, files: dict[str, bytes]) -> Any:
    if fmt == JSON_FORMAT:
        return json.loads(files[JSON_ARTIFACT].decode("utf-8"))
    module, _, name = MODEL_FORMATS[fmt].partition(":")
    return getattr(importlib.import_module(module), name).from_artifacts(files)
