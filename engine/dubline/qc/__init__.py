"""Measuring a render: the qc numbers of DESIGN.md, and pictures for people (contact sheets, overlays)."""
