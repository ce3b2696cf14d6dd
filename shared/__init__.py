"""The common library every Veikals service is built from."""
