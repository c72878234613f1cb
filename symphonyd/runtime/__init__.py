"""Run-time plumbing every daemon shares: sockets, IPC, sd_notify, logging, host config."""
