"""symphony-webhook: verifies tracker webhooks and asks the tracker for a targeted refresh."""
