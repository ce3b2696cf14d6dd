"""The marketing service: Consent ledger, campaigns, preference analysis and suppression (P6, P21, P28, P29)."""
