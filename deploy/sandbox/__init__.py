"""Sandbox partners for development and tests: a carrier, an accountant, a hosting provider."""
