"""The anomaly detectors' thresholds, in one place, with the reasons for their defaults.

Every threshold the scorer applies lives here, so a plant can read what "medium" means and a
registered model records exactly the rules it scored with (``to_dict`` goes into the artifact).

Defaults are chosen for a fleet scored every 5 s and 30 s: a healthy machine sees ~20,000
windows a day per window size, so a rule that fires on one healthy window in 10,000 still
flags a healthy machine twice a day. Hence single-window evidence from noisy statistics stops
at ``watch``; ``medium`` (plan maintenance) needs a large deviation (|z| ≥ 6, ~1e-9 per window
for Gaussian noise) or ``persistence`` windows in a row; ``critical`` is reserved for hard
limits (what a plant configured as damaging, e.g. the ISO 10816 C/D boundary).

>>> AnomalyConfig().severity_for_z(5.0), AnomalyConfig().severity_for_z(-7.0)
('watch', 'medium')
>>> AnomalyConfig.from_dict(AnomalyConfig(persistence=3).to_dict()).persistence
3
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from wearwatch.events import SEVERITIES


@dataclass(frozen=True)
class AnomalyConfig:
    """Thresholds of the rules, sensor-fault evidence and learned detectors."""

    # --- baselines -------------------------------------------------------------------------
    #: A machine needs this many healthy windows (per window size) for its own baseline;
    #: fewer, or never seen, and it is scored against the global fallback of its sensor set.
    min_windows: int = 30
    #: The std a z-score divides by is floored at max(std, rel × |p50|, abs): a feature that
    #: was constant in training must not turn every later wiggle into an infinite z.
    std_floor_rel: float = 0.01
    std_floor_abs: float = 1e-6

    # --- rules ---------------------------------------------------------------------------
    #: Hard limits (machine → sensor → (low, high)) apply to this window aggregate: the mean
    #: is the sensor's level over the window; a single spiking reading is a sensor fault.
    limit_aggregate: str = "mean"
    #: Aggregates z-scored against the machine's baseline (``<sensor>.<aggregate>``).
    zscore_aggregates: tuple[str, ...] = ("mean",)
    #: |z| bands: ≥ watch → watch, ≥ medium → medium, ≥ high → high.
    z_watch: float = 4.0
    z_medium: float = 6.0
    z_high: float = 9.0
    #: This many consecutive elevated windows (same machine, window size and alarm key)
    #: escalate the key's severity one level, capped at ``high`` (critical = hard limits).
    persistence: int = 6
    #: Evidence that does not count towards persistence: the learned detectors' opinions
    #: (HST, PCA T²) follow slow operating changes (load, ambient) for minutes on end, so
    #: they are listed at ``watch`` but escalate nothing; rules and PCA Q do.
    persistence_ignores: tuple[str, ...] = ("hst", "pca_t2")

    # --- sensor-fault evidence -------------------------------------------------------------
    #: Stuck: a window of ≥ ``stuck_min_count`` readings whose std is ≤ ratio × the baseline's
    #: median window std (only where under 1 % of healthy windows were that flat)...
    stuck_std_ratio: float = 0.01
    stuck_min_count: int = 3
    #: ...or min == max == the previous window's latest for this many windows in a row (only
    #: for sensors whose healthy values vary).
    stuck_windows: int = 3
    #: Dropout: count ≤ ratio × baseline median count and below the baseline's p01 count; a
    #: sensor seen in training and absent from a window where others report counts as 0.
    dropout_ratio: float = 0.5
    #: Spike: the max (min) is this many reading-level stds (the baseline's median window
    #: std) above (below) the mean of the window's other readings, while that mean is normal.
    spike_k: float = 8.0
    #: A spike whose score (jump / (spike_k × noise)) reaches this is ``medium`` at once: a
    #: reading 80 noise stds off while its neighbours are normal is no physical event (a load
    #: step to a level never seen in training can reach a few tens).
    spike_medium: float = 10.0
    #: Outliers, several in a window: its std ≥ this × the healthy p99 window std while no
    #: single reading explains it (``spike`` on ``<sensor>.std``, always ``spike_severity``:
    #: a load step inside a window widens it too, once).
    spike_std_ratio: float = 4.0
    #: Drift: the sensor's mean is ≥ ``z_watch`` from baseline while every sensor physically
    #: coupled to it (present on the machine) stays within ``drift_coupled_z``. Only sensors
    #: listed here can be told drifting. The defaults follow how machines fail: no mode moves
    #: the speed, and a load change moves speed and current together; a leaking seal moves
    #: pressure *and* flow; current moves with vibration (bearings, misalignment), with pressure
    #: and flow (seals) or with speed (load). Vibration (imbalance and bearing wear move it
    #: alone) and bearing temperature (lubrication loss heats the bearing first) are not listed:
    #: a drift of theirs cannot be told from the start of a machine fault.
    drift_coupling: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "speed": ("current",),
            "pressure": ("flow",),
            "flow": ("pressure",),
            "current": ("vibration", "speed", "pressure", "flow"),
        }
    )
    drift_coupled_z: float = 1.5
    #: Severity of one window's sensor evidence: ``watch``, so one odd window (a quantised
    #: reading, a burst of lost packets) raises nothing; a fault that lasts ``persistence``
    #: windows escalates to ``medium`` like any alarm key.
    stuck_severity: str = "watch"
    dropout_severity: str = "watch"
    spike_severity: str = "watch"
    drift_severity: str = "watch"

    # --- PCA T² + Q ------------------------------------------------------------------------
    pca: bool = True
    #: Inputs: these aggregates of every sensor, standardised by the machine's baseline.
    pca_aggregates: tuple[str, ...] = ("mean", "std")
    #: Components kept: the fewest explaining this share of the healthy variance.
    pca_variance: float = 0.95
    #: Thresholds: this quantile of the healthy T² and Q, times ``pca_margin``.
    pca_quantile: float = 0.999
    pca_margin: float = 1.5
    #: A Q this many times its threshold is ``medium`` (below, and any T²: ``watch``).
    pca_medium: float = 4.0
    #: Fewer complete healthy rows than this for a sensor set: no PCA for it.
    pca_min_rows: int = 50

    # --- Half-Space Trees (online) -----------------------------------------------------------
    hst: bool = True
    #: Only windows of this size feed the trees (``None``: every size): the slower windows
    #: carry the trend, and the trees cost ~60 µs a window to score and learn.
    hst_window_s: float | None = 30.0
    hst_trees: int = 5
    hst_height: int = 5
    hst_window: int = 100
    #: Scores at or above this running quantile of the machine's own scores are anomalous
    #: (River's QuantileFilter; anomalous windows are not learned).
    hst_quantile: float = 0.995
    #: Inputs: sensor means mapped linearly from [p01 − m·r, p99 + m·r] to [0, 1] (r = p99 −
    #: p01, clipped), a fixed, deterministic scaling from the baseline.
    hst_margin: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("stuck_severity", "dropout_severity", "spike_severity", "drift_severity"):
            value = getattr(self, name)
            if value not in SEVERITIES[1:]:
                raise ValueError(f"field `{name}`: {value!r} is not one of {SEVERITIES[1:]}")
        if not 0.0 < self.z_watch <= self.z_medium <= self.z_high:
            raise ValueError(
                f"field `z_watch`/`z_medium`/`z_high`: need 0 < {self.z_watch} ≤ "
                f"{self.z_medium} ≤ {self.z_high}"
            )
        if self.persistence < 1:
            raise ValueError(f"field `persistence`: {self.persistence} must be ≥ 1")
        if not 0.0 < self.pca_variance <= 1.0:
            raise ValueError(f"field `pca_variance`: {self.pca_variance} must be in (0, 1]")
        if not 0.0 < self.hst_quantile < 1.0:
            raise ValueError(f"field `hst_quantile`: {self.hst_quantile} must be in (0, 1)")

    def severity_for_z(self, z: float) -> str:
        """The z-score band of ``z`` (``normal`` below ``z_watch``)."""
        a = abs(z)
        if a >= self.z_high:
            return "high"
        if a >= self.z_medium:
            return "medium"
        if a >= self.z_watch:
            return "watch"
        return "normal"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        out["drift_coupling"] = {k: list(v) for k, v in self.drift_coupling.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnomalyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"anomaly config: unknown field `{unknown[0]}`")
        values = dict(data)
        for key in ("zscore_aggregates", "pca_aggregates", "persistence_ignores"):
            if key in values:
                values[key] = tuple(values[key])
        if "drift_coupling" in values:
            values["drift_coupling"] = {
                str(k): tuple(v) for k, v in dict(values["drift_coupling"]).items()
            }
        return cls(**values)
