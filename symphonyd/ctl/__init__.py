"""symphonyctl, the operator CLI."""
