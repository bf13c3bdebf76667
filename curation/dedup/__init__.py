"""Nothing twice, nothing from the test sets: evaluation-set lists (and, to come, duplicates)."""
