"""Sandbox launcher daemon: workspaces, hooks, agent sandboxes and agent protocol clients."""
