"""Dashboard daemon: loopback HTML, /api/v1 JSON, Server-Sent Events and /metrics."""
