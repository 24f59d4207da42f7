"""Settings precedence, credentials, and the config commands."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Settings, load_settings, render_example
from bot.errors import ConfigError


def write_toml(data_dir: Path, text: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "familiar.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(data_dir: Path) -> None:
    s = load_settings()
    assert s.data_dir == data_dir
    assert s.llm.provider == "none"
    assert s.telegram.token is None
    assert s.log.level == "INFO"


def test_file_overrides_default_and_env_overrides_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(data_dir, '[log]\nlevel = "DEBUG"\n[jobs]\ntimezone = "Europe/Paris"\n')
    s = load_settings()
    assert s.log.level == "DEBUG"
    assert s.jobs.timezone == "Europe/Paris"
    monkeypatch.setenv("FAMILIAR_LOG__LEVEL", "WARNING")
    s = load_settings()
    assert s.log.level == "WARNING"  # env wins over the file
    assert s.jobs.timezone == "Europe/Paris"  # the rest of the file section is kept


def test_explicit_values_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAMILIAR_LOG__LEVEL", "WARNING")
    assert load_settings(log={"level": "ERROR"}).log.level == "ERROR"


def test_config_file_from_familiar_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[llm]\nmodel = "from-file"\n')
    monkeypatch.setenv("FAMILIAR_CONFIG", str(path))
    assert load_settings().llm.model == "from-file"


def test_missing_explicit_config_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIAR_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_credentials_directory_supplies_secrets_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "telegram_token").write_text("123456:credential-token-value-abcdefghijklmnop\n")
    (creds / "anthropic_api_key").write_text("sk-ant-from-credentials")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FAMILIAR_TELEGRAM__TOKEN", "999:env-token")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    s = load_settings()
    assert s.telegram.token is not None
    assert s.telegram.token.get_secret_value() == "123456:credential-token-value-abcdefghijklmnop"
    assert s.llm.anthropic_api_key is not None
    assert s.llm.anthropic_api_key.get_secret_value() == "sk-ant-from-credentials"
    assert "credential-token" not in repr(s)  # secrets never show in a repr


def test_sdk_env_key_is_used_below_familiar_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-sdk")
    assert load_settings().llm.anthropic_api_key.get_secret_value() == "sk-ant-sdk"  # type: ignore[union-attr]
    monkeypatch.setenv("FAMILIAR_LLM__ANTHROPIC_API_KEY", "sk-ant-familiar")
    assert load_settings().llm.anthropic_api_key.get_secret_value() == "sk-ant-familiar"  # type: ignore[union-attr]


def test_missing_credentials_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        load_settings()


def test_state_directory_is_the_default_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAMILIAR_DATA_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert load_settings().data_dir == tmp_path / "state"


def test_every_problem_is_listed_and_secrets_are_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAMILIAR_LOG__LEVEL", "loud")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ALLOWED_USERS", "12,abc")
    monkeypatch.setenv("FAMILIAR_LLM__PROVIDER", "gpt")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = info.value.explain()
    for name in (
        "FAMILIAR_LOG__LEVEL",
        "FAMILIAR_TELEGRAM__ALLOWED_USERS",
        "FAMILIAR_LLM__PROVIDER",
    ):
        assert name in text


def test_unknown_key_in_file_is_reported(data_dir: Path) -> None:
    write_toml(data_dir, "[telegram]\ntokn = 'x'\n")
    with pytest.raises(ConfigError, match=r"telegram\.tokn is not a known setting"):
        load_settings()


def test_a_retired_setting_warns_and_the_daemon_still_starts(data_dir: Path) -> None:
    """An upgrade that drops a setting must not stop a daemon whose file still sets it."""
    from loguru import logger

    write_toml(data_dir, "[tools]\nfetch_max_chars = 20000\nmcp_result_max_chars = 5\n")
    said: list[str] = []
    sink = logger.add(said.append, level="WARNING", format="{message}")
    try:
        settings = load_settings()
    finally:
        logger.remove(sink)
    assert settings.tools.untrusted_max_chars > 0
    assert any("tools.fetch_max_chars" in m and "no effect" in m for m in said)
    assert any("tools.mcp_result_max_chars" in m for m in said)
    write_toml(data_dir, "[tools]\nfetch_max_charz = 1\n")  # a typo is still an error
    with pytest.raises(ConfigError, match=r"tools\.fetch_max_charz is not a known setting"):
        load_settings()


def test_unknown_keys_and_bad_values_are_listed_together(data_dir: Path) -> None:
    """One `config check` lists every problem: a typo does not hide a bad value, nor the reverse."""
    write_toml(data_dir, '[llm]\nprovider = "bogus"\ntemperature = 0.5\n[telegram]\ntokn = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = info.value.explain()
    assert "llm.temperature is not a known setting" in text
    assert "telegram.tokn is not a known setting" in text
    assert "llm.provider: Input should be" in text and "'bogus'" in text


def test_bad_toml_syntax_is_reported(data_dir: Path) -> None:
    write_toml(data_dir, "[log\nlevel = \n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings()


def test_ids_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ADMINS", "1, 2")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ALLOWED_USERS", "[3, 4]")
    s = load_settings()
    assert s.telegram.admins == [1, 2]
    assert s.telegram.allowed_users == [3, 4]


def test_example_is_valid_toml_and_names_every_setting() -> None:
    text = render_example()
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") else line for line in text.splitlines()
    )
    parsed = tomllib.loads(uncommented)
    assert "data_dir" in parsed
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            assert set(parsed[name]) == set(annotation.model_fields), name


def test_config_check_command_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check"])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    monkeypatch.setenv("FAMILIAR_LOG__LEVEL", "loud")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__TOKEN", "123456:super-secret-token-value-abcdefghijk")
    bad = runner.invoke(app, ["config", "check"])
    assert bad.exit_code == 2
    assert "FAMILIAR_LOG__LEVEL" in bad.output
    assert "super-secret" not in bad.output


def test_config_example_command_prints_the_example() -> None:
    result = CliRunner().invoke(app, ["config", "example"])
    assert result.exit_code == 0
    assert result.output == render_example()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", ""])
def test_an_unknown_time_zone_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """Found by `config check`, not by a ZoneInfoNotFoundError traceback at start."""
    monkeypatch.setenv("FAMILIAR_JOBS__TIMEZONE", zone)
    with pytest.raises(ConfigError, match=r"jobs\.timezone: .*not a known IANA time zone"):
        load_settings()
    monkeypatch.setenv("FAMILIAR_JOBS__TIMEZONE", "Europe/Berlin")
    assert load_settings().jobs.timezone == "Europe/Berlin"


@pytest.mark.parametrize("name", ["BACKUP_CRON", "DIGEST_CRON", "LESSONS_CRON"])
def test_a_bad_job_schedule_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(f"FAMILIAR_JOBS__{name}", "61 * * * *")
    with pytest.raises(ConfigError, match=rf"jobs\.{name.lower()}: .*not a crontab schedule"):
        load_settings()
    monkeypatch.setenv(f"FAMILIAR_JOBS__{name}", "*/30 8-18 * * 1-5")
    assert load_settings()
