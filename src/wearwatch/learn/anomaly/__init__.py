"""Anomaly detection on window features: rule baselines, PCA T²+Q, Half-Space Trees."""
