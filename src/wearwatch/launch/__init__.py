"""``wearwatch up``: the whole plant on one machine — warm-up, supervised processes, resume."""
