"""Denials that explain themselves: the hint for one refusal, and each run's tally of them.

The agent sees the hint in the proxy's 403 body; the operator sees it in the journal (one line
the first time a name is refused for a reason, bounded per agent) and, when the sandbox is
torn down, one ``egress_denials`` line with every refused name and its count plus the one
``allowed_domains`` line that would have let the allowlisted-name refusals through. Both are
logged inside the run's log context, so ``symphonyctl logs ISSUE`` shows them; the same
counts and line go into the ``sandbox_teardown`` audit record, which the dashboard's issue
view shows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.launcher")
AuditSink = Callable[[dict[str, Any]], None]
HINTS_PER_AGENT = 32  # distinct (name, reason) hints logged in full; the rest are counted
SUMMARY_NAMES = 20
MAX_TALLY = 1024  # distinct (name, reason) pairs counted; past it, under "other"


def hint(reason: str, host: str | None, port: int | None = None) -> str | None:
    """What the operator would change to allow this, or why nothing should be changed."""
    name = host or "?"
    if reason == "not_allowlisted":
        return f"to allow it, add to sandbox.egress: allowed_domains: [{name}]"
    if reason == "denied_domain":
        return f"{name} matches a rule in sandbox.egress.denied_domains"
    if reason == "port_not_allowed" and port is not None:
        return f"port {port} is not in sandbox.egress.allowed_ports (default: 80, 443)"
    if reason == "mode_block":
        return "sandbox.egress.mode is block: no egress at all"
    if reason == "ip_literal":
        return "addresses cannot be allowed; connect by a DNS name"
    if reason.startswith("forbidden_address:"):
        kind = reason.split(":", 1)[1]
        return f"{name} resolves to a {kind} address; only the host's permitted_networks opens it"
    if reason == "not_resolved_for_address":
        return f"the address was not an answer of the agent's resolver for {name}"
    if reason == "tls_no_sni":
        return "a TLS connection without a server name cannot be checked; it is refused"
    if reason == "no_server_name":
        return "no TLS server name or HTTP Host header to decide on; use the proxy"
    return None


def explain(reason: str, host: str | None, port: int | None = None) -> str:
    """The body of a 403: the reason, then the hint on its own line."""
    text = f"symphonyd egress: {reason}" + (f" ({host})" if host else "")
    advice = hint(reason, host, port)
    return text + (f"\n{advice}" if advice else "")


class DenialTally:
    """Counts an agent's egress denials by (name, reason) on their way to the audit sink."""

    def __init__(self, agent_id: str, audit: AuditSink) -> None:
        self.agent_id = agent_id
        self.audit = audit
        self.counts: Counter[tuple[str, str]] = Counter()
        self.hinted = 0

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("type") == "egress_deny":
            self._count(record)
        self.audit(record)

    def _count(self, record: dict[str, Any]) -> None:
        host, reason = record.get("host"), str(record.get("reason", "?"))
        if not isinstance(host, str):
            return  # a limit refusal names no host (its count is in the audit summary)
        key = (host, reason)
        if key not in self.counts and len(self.counts) >= MAX_TALLY:
            key = ("other", reason)
        self.counts[key] += 1
        port = record.get("port") if isinstance(record.get("port"), int) else None
        if self.counts[key] == 1 and self.hinted < HINTS_PER_AGENT:
            self.hinted += 1
            log_event(
                log,
                "egress_denied",
                level=logging.WARNING,
                agent_id=self.agent_id,
                via=record.get("via"),
                host=host,
                port=port,
                reason=reason,
                hint=hint(reason, host, port),
            )

    def suggestion(self) -> str | None:
        """The one-line policy change that allows every name refused as not allowlisted."""
        names = sorted({h for (h, r) in self.counts if r == "not_allowlisted" and h != "other"})
        return f"allowed_domains: [{', '.join(names)}]" if names else None

    def summary(self) -> str:
        """``name xCOUNT (reason)`` for the most refused names, most first."""
        ranked = self.counts.most_common(SUMMARY_NAMES)
        text = ", ".join(f"{h} x{n} ({r})" for (h, r), n in ranked)
        rest = len(self.counts) - len(ranked)
        return text + (f", and {rest} more" if rest > 0 else "")

    def teardown_fields(self) -> dict[str, Any]:
        """For the ``sandbox_teardown`` audit record (the dashboard's issue view shows it)."""
        if not self.counts:
            return {}
        ranked = self.counts.most_common(SUMMARY_NAMES)
        fields: dict[str, Any] = {
            "denied": [{"host": h, "reason": r, "count": n} for (h, r), n in ranked],
            "denied_total": sum(self.counts.values()),
        }
        suggest = self.suggestion()
        if suggest:
            fields["suggest"] = suggest
        return fields

    def log_summary(self) -> None:
        """One journal line for the run, if anything was refused."""
        if not self.counts:
            return
        log_event(
            log,
            "egress_denials",
            level=logging.WARNING,
            agent_id=self.agent_id,
            denied=self.summary(),
            total=sum(self.counts.values()),
            suggest=self.suggestion(),
        )
