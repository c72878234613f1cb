"""Tracker poller daemon: adapters and host-side agent tools; the only holder of the credential."""
