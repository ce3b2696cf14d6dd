"""Personal data the marketing service holds (its part of the Art. 30 record).

Every column that holds personal data must be declared here; the privacy service builds the
record of processing and the privacy notice from these declarations.
"""
from shared.contracts.privacy import DataInventory

# Nothing yet: the marketing service's tables arrive with its own issue.
INVENTORY = DataInventory(participant="marketing", entries=[])
