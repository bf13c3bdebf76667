"""Review: human decisions on what the copyright stage held back, and takedowns."""
