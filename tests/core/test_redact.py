from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from symphonyd.core.audit_events import PREVIEW_CHARS, prompt_digest
from symphonyd.core.redact import Redactor

CANARY = "canary-S3cr3t-value-4242"

# One sample per well-known shape; each must disappear from the scrubbed text.
SHAPES = {
    "openai_key": "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2",
    "anthropic_key": "sk-ant-api03-" + "x" * 40,
    "github_token": "ghp_" + "a1B2" * 9,
    "github_pat": "github_pat_" + "11ABCDEFG0" * 4,
    "gho": "gho_" + "Z9y8" * 9,
    "slack_token": "xoxb-123456789012-abcdefABCDEF",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "linear_key": "lin_api_" + "q1W2e3R4t5Y6u7I8o9P0a1S2",
    "google_api_key": "AIza" + "S" * 35,
    "npm_token": "npm_" + "a" * 36,
    "gitlab_token": "glpat-" + "x1y2z3" * 4,
    "stripe_key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_token_shapes_are_scrubbed(name: str) -> None:
    token = SHAPES[name]
    out = Redactor().text(f"before {token} after")
    assert token not in out
    assert "[REDACTED:" in out
    assert out.startswith("before ") and out.endswith(" after")


def test_bearer_basic_pem_url_and_assignments() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
    text = (
        "Authorization: Bearer abc.def-ghi_jkl123 and Basic dXNlcjpwYXNzd29yZA== "
        f"{pem} https://bob:hunter22@example.test/x MY_API_KEY=zzzzzzzzzz9 "
        '"password": "opensesame1"'
    )
    out = Redactor().text(text)
    for secret in ("abc.def-ghi_jkl123", "dXNlcjpwYXNzd29yZA", "MIIEpAIBAAKCAQEA", "hunter22"):
        assert secret not in out
    assert "zzzzzzzzzz9" not in out and "opensesame1" not in out
    assert "MY_API_KEY=" in out and "example.test/x" in out


def test_truncated_pem_is_still_scrubbed() -> None:
    out = Redactor().text("key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA")
    assert "b3BlbnNzaC1rZXktdjEAAAA" not in out


def test_configured_secret_in_plain_and_encoded_forms() -> None:
    redactor = Redactor([CANARY, "  ", ""])
    forms = [
        CANARY,
        urllib.parse.quote(CANARY, safe=""),
        json.dumps(CANARY)[1:-1],
    ]
    for prefix in (b"", b"x", b"xy"):
        forms.append(base64.b64encode(prefix + CANARY.encode() + b"tail").decode())
        forms.append(base64.urlsafe_b64encode(prefix + CANARY.encode()).decode())
    for form in forms:
        out = redactor.text(f"[{form}]")
        assert CANARY not in out
        # The encoded core of the secret is gone: decoding what is left cannot reveal it.
        assert form not in out, form


def test_scrubbed_json_values_and_secret_named_keys() -> None:
    redactor = Redactor([CANARY])
    value = {
        "args": ["--token", CANARY, {"nested": f"x{CANARY}y"}],
        "api_key": "anything-at-all",
        "Authorization": "whatever",
        "input_tokens": 12,
        "prompt_sha256": "a" * 64,
        CANARY: 1,
    }
    out = redactor.value(value)
    assert CANARY not in json.dumps(out)
    assert out["api_key"] == "[REDACTED:secret]"
    assert out["Authorization"] == "[REDACTED:secret]"
    assert out["input_tokens"] == 12
    assert out["prompt_sha256"] == "a" * 64


def test_ordinary_text_survives() -> None:
    text = "Fix the login page; tokens are counted per turn. Risk-assessment done."
    assert Redactor().text(text) == text


def test_prompt_digest_hashes_raw_and_previews_scrubbed() -> None:
    prompt = "x" * (PREVIEW_CHARS - 5) + CANARY + "y" * 1000
    digest = prompt_digest(prompt, Redactor([CANARY]))
    assert len(digest["prompt_sha256"]) == 64
    assert digest["prompt_chars"] == len(prompt)
    assert len(digest["preview"]) == PREVIEW_CHARS
    assert digest["preview_truncated"] is True
    # The secret straddles the cut; scrubbing first means not even its start survives.
    assert CANARY[:5] not in digest["preview"]
