"""The payments service: Card payments through the PSP, refunds, memberships and disputes (P3, P7, P17, P24, P25)."""
