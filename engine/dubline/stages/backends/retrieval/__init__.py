"""The weight-free, speaker-specific ``retrieval`` backend (the default)."""
