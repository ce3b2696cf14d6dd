"""Contracts between services: the pydantic messages more than one service speaks."""
