"""The quick start's scripted stand-in for a model API (no credential, no network)."""
