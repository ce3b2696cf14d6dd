"""The five Veikals services; each runs as ``python -m services.<name>``."""
