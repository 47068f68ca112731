"""The fleet pipeline: readings → windows → features → anomaly → risk → health → alarms."""
