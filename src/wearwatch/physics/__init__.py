"""Physical models shared by the twins (the plant) and the pipelines (the Level-2 side)."""
