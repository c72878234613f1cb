from __future__ import annotations

from pathlib import Path

import pytest

from symphonyd.audit.config import load_secrets, parse_args
from symphonyd.core.errors import ConfigError


def test_systemd_environment_gives_dir_and_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "linear_api_key").write_text("lin_api_abcdefghijklmnop\n")
    (creds / "env").write_text('export OPENAI_API_KEY="sk-zzzz1234"\nSHORT=ab\nnoise\n')
    config = parse_args(
        [], {"STATE_DIRECTORY": str(tmp_path / "state"), "CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert config.directory == tmp_path / "state"
    secrets = load_secrets(config.secret_files)
    assert "lin_api_abcdefghijklmnop" in secrets
    assert "sk-zzzz1234" in secrets
    assert "noise" in secrets
    assert "ab" not in secrets and "=" not in secrets


def test_hand_started_options(tmp_path: Path) -> None:
    config = parse_args(
        ["--dir", str(tmp_path), "--listen", "dispatcher=/tmp/x.sock", "--allow-uid", "998"],
        {},
    )
    assert config.listen == {"dispatcher": Path("/tmp/x.sock")}
    assert config.allow_uids == frozenset({998})
    with pytest.raises(SystemExit):
        parse_args(["--listen", "nopath"], {})
    with pytest.raises(ConfigError):
        parse_args(["--max-record-bytes", "10"], {})


def test_unreadable_or_huge_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_secrets([tmp_path / "missing"])
    big = tmp_path / "big"
    big.write_bytes(b"x" * (65 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load_secrets([big])
