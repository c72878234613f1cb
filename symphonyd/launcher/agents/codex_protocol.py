"""Codex app-server 0.169.0 payloads: what we send, and lenient reads of what comes back.

Method names and shapes follow the generated schema (reference/codex-app-server-0.169.0).
Every reader takes ``Any`` and returns a typed value or ``None``; no payload can raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.launcher.agents.session import Decision, result_text, short

CLIENT_NAME = "symphonyd"

# Server requests that are approvals, and the file-change vs command kind of each.
COMMAND_APPROVAL = "item/commandExecution/requestApproval"
FILE_APPROVAL = "item/fileChange/requestApproval"
LEGACY_COMMAND_APPROVAL = "execCommandApproval"
LEGACY_PATCH_APPROVAL = "applyPatchApproval"
USER_INPUT = "item/tool/requestUserInput"
TOOL_CALL = "item/tool/call"

# Notifications the client understands; any other method is counted as unknown.
KNOWN_NOTIFICATIONS = frozenset(
    {
        "thread/started",
        "thread/status/changed",
        "thread/name/updated",
        "thread/readState/changed",
        "thread/tokenUsage/updated",
        "turn/started",
        "turn/completed",
        "turn/diff/updated",
        "turn/plan/updated",
        "item/started",
        "item/completed",
        "item/agentMessage/delta",
        "item/reasoning/summaryTextDelta",
        "item/reasoning/textDelta",
        "item/reasoning/summaryPartAdded",
        "item/commandExecution/outputDelta",
        "item/fileChange/patchUpdated",
        "account/rateLimits/updated",
        "error",
        "warning",
        "serverRequest/resolved",
        "remoteControl/status/changed",
        "mcpServer/startupStatus/updated",
        "configWarning",
        "deprecationNotice",
    }
)


# The rest of 0.169.0's ServerNotification schema: documented protocol messages this client
# does not act on. They are counted as ``ignored``, not as unusable lines: a sandboxed run's
# turn/start (externalSandbox policy) always makes codex announce thread/settings/updated,
# and calling that "malformed" taught operators to ignore the counter that flags real garbage.
IGNORED_NOTIFICATIONS = frozenset(
    """
    account/gatewayOAuth/changed account/login/completed account/updated app/list/updated
    autoApprovalReview/strictReviewRequired command/exec/outputDelta
    externalAgentConfig/import/completed externalAgentConfig/import/progress fs/changed
    fuzzyFileSearch/sessionCompleted fuzzyFileSearch/sessionUpdated guardianWarning
    hook/completed hook/started item/autoApprovalReview/completed
    item/autoApprovalReview/started item/commandExecution/terminalInteraction
    item/fileChange/outputDelta item/mcpToolCall/progress item/plan/delta
    mcpServer/event/stream/notification mcpServer/oauthLogin/completed model/rerouted
    model/safetyBuffering/updated model/verification modelProvider/authRecoveryCompleted
    modelProvider/authRecoveryStarted process/exited process/outputDelta project/changed
    skills/changed thread/archived thread/attachment/updated thread/closed thread/compacted
    thread/deleted thread/environment/connected thread/environment/disconnected
    thread/goal/cleared thread/goal/updated thread/prediction/updated thread/project/updated
    thread/queue/changed thread/realtime/closed thread/realtime/error
    thread/realtime/item/completed thread/realtime/item/started
    thread/realtime/item/transcript/delta thread/realtime/itemAdded
    thread/realtime/outputAudio/delta thread/realtime/sdp thread/realtime/started
    thread/realtime/transcript/delta thread/realtime/transcript/done thread/reverted
    thread/section/changed thread/settings/updated thread/unarchived turn/moderationMetadata
    windows/worldWritableWarning windowsSandbox/setupCompleted
    """.split()
)


def initialize_params(version: str) -> dict[str, Any]:
    # experimentalApi is what lets thread/start carry dynamicTools.
    return {
        "clientInfo": {"name": CLIENT_NAME, "title": "Symphony", "version": version},
        "capabilities": {"experimentalApi": True},
    }


def dynamic_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "inputSchema": spec.input_schema,
    }


def thread_start_params(
    cwd: str, approval_policy: Any, sandbox: Any, tools: Iterable[ToolSpec]
) -> dict[str, Any]:
    params: dict[str, Any] = {"cwd": cwd, "approvalPolicy": approval_policy, "sandbox": sandbox}
    specs = [dynamic_tool(t) for t in tools]
    if specs:
        params["dynamicTools"] = specs
    return params


def turn_start_params(
    thread_id: str, prompt: str, cwd: str, sandbox_policy: Any | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "threadId": thread_id,
        "input": [{"type": "text", "text": prompt}],
        "cwd": cwd,
    }
    if sandbox_policy is not None:
        params["sandboxPolicy"] = sandbox_policy
    return params


def default_sandbox_policy(workspace: str) -> dict[str, Any]:
    """Writes only in the workspace, no network from the agent's own sandbox."""
    return {"type": "workspaceWrite", "writableRoots": [workspace], "networkAccess": False}


def approval_result(method: str, decision: Decision) -> dict[str, Any]:
    if method in (LEGACY_COMMAND_APPROVAL, LEGACY_PATCH_APPROVAL):
        return {"decision": "approved" if decision == "accept" else "denied"}
    return {"decision": decision}


def tool_call_result(result: ToolResult) -> dict[str, Any]:
    text = result_text(result)
    return {"contentItems": [{"type": "inputText", "text": text}], "success": result.success}


def tool_failure(code: str, message: str) -> dict[str, Any]:
    return tool_call_result(ToolResult(False, {"error": {"code": code, "message": message}}))


# --------------------------------------------------------------------------- lenient reads


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(int(value), 0)


def token_totals(params: Any) -> TokenTotals | None:
    """Absolute thread totals from thread/tokenUsage/updated (``last`` is a delta: ignored)."""
    total = as_dict(as_dict(as_dict(params).get("tokenUsage")).get("total"))
    inp, out, tot = (
        _int(total.get("inputTokens")),
        _int(total.get("outputTokens")),
        _int(total.get("totalTokens")),
    )
    if inp is None and out is None and tot is None:
        return None
    inp, out = inp or 0, out or 0
    return TokenTotals(input_tokens=inp, output_tokens=out, total_tokens=tot or inp + out)


def merge_sparse(base: dict[str, Any], update: Any, depth: int = 0) -> dict[str, Any]:
    """Merge a sparse rate-limit update: null or missing fields keep their last value."""
    if not isinstance(update, dict) or depth > 8:
        return base
    merged = dict(base)
    for key, value in update.items():
        if value is None or not isinstance(key, str):
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sparse(merged[key], value, depth + 1)
        else:
            merged[key] = value
    return merged


def turn_of(params: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(turn id, status, turn) of turn/started or turn/completed."""
    turn = as_dict(as_dict(params).get("turn"))
    return as_str(turn.get("id")), as_str(turn.get("status")), turn


def turn_error_message(turn: dict[str, Any]) -> str:
    error = as_dict(turn.get("error"))
    parts = [as_str(error.get("message")) or "turn failed"]
    info = error.get("codexErrorInfo")
    if isinstance(info, str):
        parts.append(info)
    elif isinstance(info, dict) and info:
        key = next(iter(info))
        status = as_dict(info.get(key)).get("httpStatusCode")
        parts.append(f"{key}" + (f" http {status}" if isinstance(status, int) else ""))
    return short(": ".join(str(p) for p in parts))


def item_summary(params: Any) -> tuple[str | None, str | None]:
    """(item type, short human summary) of an item/completed notification."""
    item = as_dict(as_dict(params).get("item"))
    kind = as_str(item.get("type"))
    if kind == "agentMessage":
        return kind, short(as_str(item.get("text")) or "")
    if kind == "commandExecution":
        code = item.get("exitCode")
        return kind, short(f"command {item.get('status')} (exit {code}): {item.get('command')}")
    if kind == "fileChange":
        changes = item.get("changes")
        paths = (
            [as_str(as_dict(c).get("path")) for c in changes] if isinstance(changes, list) else []
        )
        return kind, short(f"file change {item.get('status')}: {', '.join(p for p in paths if p)}")
    if kind == "dynamicToolCall":
        return kind, short(f"tool {item.get('tool')} success={item.get('success')}")
    return kind, None


def transcript_item(params: Any) -> tuple[str, str] | None:
    """(kind, text) of an agentMessage or commandExecution item, for the audit transcript."""
    item = as_dict(as_dict(params).get("item"))
    kind = as_str(item.get("type"))
    if kind == "agentMessage":
        text = as_str(item.get("text"))
        return ("agent_message", text) if text else None
    if kind == "commandExecution":
        command = item.get("command")
        if not isinstance(command, str) or not command:
            return None
        return "command", f"{command} (exit {item.get('exitCode')})"
    return None
