"""Audit writer daemon: the hash-chained, durable, verifiable audit log."""
