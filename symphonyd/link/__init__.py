"""The link to worker hosts over OpenSSH (docs/design/1100-worker-hosts.md)."""
