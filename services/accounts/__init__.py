"""The accounts service: Customers, staff, sessions and profiles (policy P1, P2, P9, P10, P16, P19, P20, P22)."""
