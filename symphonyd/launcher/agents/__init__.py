"""Agent runtimes the launcher drives over stdio: Codex app-server and Claude Code."""
