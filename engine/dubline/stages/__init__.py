"""The pipeline stages of DESIGN.md, one package or module per stage (media, faces, speech, backends, composite)."""
