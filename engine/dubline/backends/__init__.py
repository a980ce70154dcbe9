"""Mouth-rendering backends (``retrieval``, ``wav2lip``, ...), one sub-package each.

Importing this package must stay cheap: torch is imported only by the backends that need it.
"""
