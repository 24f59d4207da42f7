"""Settings that cannot be read are one clear message with a fix, through ``familiar config check``
too, and never show a secret (test_config.py covers precedence and the common mistakes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import load_settings
from bot.errors import ConfigError

TOKEN = "123456:AAE-secret-token-value"


def test_an_unreadable_credential_file_is_named_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    (creds / "telegram_token").mkdir(parents=True)  # not a file: cannot be read
    (creds / "anthropic_api_key").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    explained = caught.value.explain()
    assert f"credential file {creds / 'telegram_token'} cannot be read" in explained
    assert "readable by the daemon's user" in explained
    assert TOKEN not in explained

    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code != 0
    assert "cannot be read" in result.output and TOKEN not in result.output


def test_a_section_variable_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAMILIAR_LLM", '{"provider": "anthropic", "anthropic_api_key": "' + TOKEN)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    explained = caught.value.explain()
    assert "FAMILIAR_* environment variable cannot be parsed" in explained
    assert '"llm"' in explained  # which one
    assert TOKEN not in explained


def test_credentials_fill_secrets_and_a_blank_one_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "telegram_token").write_text(TOKEN + "\n")
    (creds / "openai_api_key").write_text("   \n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))

    settings = load_settings()

    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == TOKEN  # the newline is not part of it
    assert settings.llm.openai_api_key is None
    assert TOKEN in settings.secret_values()  # so the log filter masks it
    assert TOKEN not in repr(settings)
