"""Doctor's unit lines from ``systemctl show`` properties (the e2e container test,
tests/e2e/test_exit_codes.py, drives the same code against a real systemd)."""

from __future__ import annotations

from symphonyd.ctl.doctor_units import unit_check

UNIT = "symphony-tracker.service"


def props(**kw: str) -> dict[str, str]:
    base = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running",
            "Result": "success", "ExecMainCode": "0", "ExecMainStatus": "0",
            "NRestarts": "0"}  # fmt: skip
    return {**base, **kw}


def test_a_restart_loop_names_its_cause_not_the_target() -> None:
    check = unit_check(UNIT, props(ActiveState="activating", SubState="auto-restart",
                                   Result="exit-code", ExecMainCode="1", ExecMainStatus="243",
                                   NRestarts="7"))  # fmt: skip
    assert check.status == "fail"
    assert "243/CREDENTIALS" in check.detail and "7 restarts" in check.detail
    assert check.fix is not None and "/etc/symphony/credentials/tracker" in check.fix
    assert "enable" not in check.fix


def test_failed_units_say_why() -> None:
    config = unit_check(UNIT, props(ActiveState="failed", SubState="failed", Result="exit-code",
                                    ExecMainCode="1", ExecMainStatus="78"))  # fmt: skip
    assert config.status == "fail" and "78/CONFIG" in config.detail
    gave_up = unit_check(UNIT, props(ActiveState="failed", SubState="failed",
                                     Result="start-limit-hit", ExecMainCode="1",
                                     ExecMainStatus="226"))  # fmt: skip
    assert "gave up" in gave_up.detail and "226/NAMESPACE" in gave_up.detail
    killed = unit_check(UNIT, props(ActiveState="failed", SubState="failed", Result="signal",
                                    ExecMainCode="2", ExecMainStatus="9"))  # fmt: skip
    assert "killed by signal 9" in killed.detail


def test_a_running_unit_shows_no_old_error() -> None:
    # ExecMainStatus of an earlier process, restarts in the past: the unit runs now.
    check = unit_check(UNIT, props(ExecMainStatus="243", NRestarts="3"))
    assert check.status == "ok" and check.detail == "loaded, active/running"
    stopped = unit_check("symphony-dashboard.service", props(ActiveState="inactive",
                                                             SubState="dead"))  # fmt: skip
    assert stopped.status == "warn" and "exit" not in stopped.detail
