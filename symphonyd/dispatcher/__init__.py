"""Dispatcher daemon: the single authority for claims, retries, reconciliation, pause, budgets."""
