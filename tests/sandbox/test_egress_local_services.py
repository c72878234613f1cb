from __future__ import annotations

import pytest

from symphonyd.launcher.sandbox.egress_policy import (
    EgressPolicyError,
    build_policy,
    decide_local,
    parse_local_service,
)


def test_local_service_is_exact_name_and_port() -> None:
    policy = build_policy(local_services=["Demo-Model.Local:18080"])
    allowed = decide_local(policy, "demo-model.local.", 18080)
    assert allowed is not None and allowed.allowed and allowed.reason == "local_service"
    assert decide_local(policy, "demo-model.local", 18081) is None
    assert decide_local(policy, "x.demo-model.local", 18080) is None
    assert decide_local(policy, "127.0.0.1", 18080) is None


def test_denied_and_block_still_win() -> None:
    denied = build_policy(local_services=["m.local:1"], denied_domains=["*.local"])
    verdict = decide_local(denied, "m.local", 1)
    assert verdict is not None and not verdict.allowed and verdict.reason == "denied_domain"
    assert (
        decide_local(build_policy(mode="block", local_services=["m.local:1"]), "m.local", 1) is None
    )


@pytest.mark.parametrize(
    "bad",
    ["m.local", "m.local:0", "m.local:70000", "127.0.0.1:80", ":80", "m.local:http", "[::1]:80"],
)
def test_bad_entries_are_refused(bad: str) -> None:
    with pytest.raises(EgressPolicyError):
        parse_local_service(bad)
