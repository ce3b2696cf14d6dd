"""The privacy service: Data-subject requests, fan-out to participants, retention, audit and records of processing (P20-P30)."""
