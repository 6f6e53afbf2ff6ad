"""The usage ledger: one durable record per session, written beside the hot path (see ledger.py)."""
