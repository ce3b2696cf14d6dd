"""The orders service: Catalogue, checkout, delivery, purchase history, complaints and invoices (P1, P2, P4-P6, P11, P13, P14, P23-P25)."""
