"""Shared basics every layer may use: errors, time, paths, progress, caches, model registry."""
