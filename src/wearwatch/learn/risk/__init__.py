"""Failure risk from real failure labels, health scores and time to maintenance."""
