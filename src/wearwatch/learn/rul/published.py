"""Published C-MAPSS test-set results, for side-by-side tables.

Copied from ``shared/data/cmapss/PUBLISHED_RESULTS.md`` (RMSE / PHM08 score, one prediction per
test engine at its last cycle). That file's provenance notes apply: most figures are secondary
(seen in the RUL-FFVE repository's Benchmark.md, the ICE team's docs, or other projects' notes)
and a few are from memory; papers differ in RUL cap and in best-run vs mean reporting.
``None`` = not reported.
"""

from __future__ import annotations

from typing import NamedTuple


class PublishedRow(NamedTuple):
    method: str
    results: dict[str, tuple[float, float | None]]  # subset -> (RMSE, score)
    source: str


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow(
        "CNN (Babu et al. 2016)",
        {
            "FD001": (18.45, 1299),
            "FD002": (30.29, 13600),
            "FD003": (19.82, 1600),
            "FD004": (29.16, 7890),
        },
        "FFVE",
    ),
    PublishedRow(
        "Deep LSTM (Zheng et al. 2017)",
        {
            "FD001": (16.14, 338),
            "FD002": (24.49, 4450),
            "FD003": (16.18, 852),
            "FD004": (28.17, 5550),
        },
        "FFVE",
    ),
    PublishedRow(
        "DCNN (Li et al. 2018)",
        {
            "FD001": (12.61, 273.7),
            "FD002": (22.36, 10412),
            "FD003": (12.64, 284.1),
            "FD004": (23.31, 12466),
        },
        "notes/recall",
    ),
    PublishedRow(
        "MS-DCNN (Li et al. 2020)",
        {
            "FD001": (11.44, 196.22),
            "FD002": (19.35, 3747),
            "FD003": (11.67, 241.89),
            "FD004": (22.22, 4844),
        },
        "FFVE",
    ),
    PublishedRow(
        "AGCNN (Liu et al. 2020)",
        {
            "FD001": (12.42, 225.5),
            "FD002": (19.43, 1492),
            "FD003": (13.39, 227.1),
            "FD004": (21.50, 3392),
        },
        "FFVE",
    ),
    PublishedRow(
        "TCNN-Transformer (Wang et al. 2021)",
        {
            "FD001": (11.40, 254),
            "FD002": (14.75, 1453),
            "FD003": (11.35, 415),
            "FD004": (17.30, 2583),
        },
        "ICE",
    ),
    PublishedRow(
        "GCU-Transformer (Mo et al. 2021)",
        {
            "FD001": (11.27, None),
            "FD002": (22.81, None),
            "FD003": (11.42, None),
            "FD004": (24.86, None),
        },
        "notes",
    ),
    PublishedRow(
        "DAST (Zhang et al. 2022)",
        {
            "FD001": (11.43, 203.15),
            "FD002": (15.25, 924.96),
            "FD003": (11.32, 154.92),
            "FD004": (18.23, 1490.72),
        },
        "notes/recall",
    ),
    PublishedRow(
        "RVE (Costa & Sánchez 2022)",
        {
            "FD001": (13.42, 323),
            "FD002": (14.92, 1379),
            "FD003": (12.51, 256),
            "FD004": (16.37, 1846),
        },
        "ICE, FFVE",
    ),
    PublishedRow(
        "BiGRU-TSAM (Zhang et al. 2022)",
        {
            "FD001": (12.56, 213),
            "FD002": (18.94, 2264),
            "FD003": (12.45, 232),
            "FD004": (20.47, 3610),
        },
        "ICE",
    ),
    PublishedRow(
        "DA-TCN (Song et al. 2021)",
        {
            "FD001": (11.78, 229),
            "FD002": (19.95, 1842),
            "FD003": (11.56, 257),
            "FD004": (18.23, 2317),
        },
        "ICE",
    ),
    PublishedRow(
        "ADL-DNN (Xiang et al. 2022)",
        {
            "FD001": (13.05, 238),
            "FD002": (17.33, 1149),
            "FD003": (12.59, 281),
            "FD004": (16.95, 1371),
        },
        "ICE, FFVE",
    ),
    PublishedRow(
        "MTSTAN",
        {
            "FD001": (10.97, 175.36),
            "FD002": (16.81, 1154.36),
            "FD003": (10.90, 188.22),
            "FD004": (18.85, 1446.29),
        },
        "FFVE",
    ),
    PublishedRow(
        "FFVE",
        {
            "FD001": (12.31, 280.21),
            "FD002": (12.55, 772.17),
            "FD003": (12.43, 302.1),
            "FD004": (14.08, 1149.03),
        },
        "FFVE",
    ),
    PublishedRow(
        "STAR (Fan et al. 2024)",
        {
            "FD001": (10.61, 169),
            "FD002": (13.47, 784),
            "FD003": (10.71, 202),
            "FD004": (15.87, 1449),
        },
        "notes",
    ),
)
