"""The one settings model, read once by the composition root, and its sources.

Precedence, highest first: values passed in, systemd credentials (secrets only), ``FAMILIAR_*``
environment variables (``__`` nests: ``FAMILIAR_TELEGRAM__TOKEN``), the TOML file
(``FAMILIAR_CONFIG``, default ``<data dir>/familiar.toml``), defaults. Each package owns its
section; this module only composes them.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, get_args

from loguru import logger
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from agents.settings import LLMSettings, ReviewSettings
from agents.tools.settings import ToolsSettings
from agents.training.settings import TrainingSettings
from agents.voice.settings import VoiceSettings
from bot.errors import ConfigError
from bot.settings import DaemonSettings, LogSettings, TelegramSettings
from jobs.settings import JobsSettings
from memory.settings import MediaSettings, MemorySettings

ENV_PREFIX = "FAMILIAR_"
CONFIG_ENV = "FAMILIAR_CONFIG"
DATA_DIR_ENV = "FAMILIAR_DATA_DIR"

# Secrets that may come from $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential=).
CREDENTIALS: dict[str, tuple[str, str]] = {
    "telegram_token": ("telegram", "token"),
    "telegram_webhook_secret": ("telegram", "webhook_secret"),
    "anthropic_api_key": ("llm", "anthropic_api_key"),
    "openai_api_key": ("llm", "openai_api_key"),
}
# Variables that the provider SDKs read themselves; honoured below FAMILIAR_* ones.
SDK_ENV: dict[str, tuple[str, str]] = {
    "ANTHROPIC_API_KEY": ("llm", "anthropic_api_key"),
    "OPENAI_API_KEY": ("llm", "openai_api_key"),
}


def default_data_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the per-user XDG state directory."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "familiar"


class Settings(BaseSettings):
    """Everything Familiar can be told. Sections belong to the packages that use them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the database, index, adapters and backups live (FAMILIAR_DATA_DIR).",
    )
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)  # type: ignore[arg-type]
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    review: ReviewSettings = Field(default_factory=ReviewSettings)  # type: ignore[arg-type]
    voice: VoiceSettings = Field(default_factory=VoiceSettings)  # type: ignore[arg-type]
    training: TrainingSettings = Field(default_factory=TrainingSettings)  # type: ignore[arg-type]
    memory: MemorySettings = Field(default_factory=MemorySettings)  # type: ignore[arg-type]
    media: MediaSettings = Field(default_factory=MediaSettings)  # type: ignore[arg-type]
    jobs: JobsSettings = Field(default_factory=JobsSettings)  # type: ignore[arg-type]
    tools: ToolsSettings = Field(default_factory=ToolsSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)  # type: ignore[arg-type]
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)  # type: ignore[arg-type]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = (
            init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        )
        toml_path = config_file_path(init_kwargs.get("data_dir"))
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            CredentialsSource(settings_cls),
            env_settings,
            SdkEnvSource(settings_cls),
        ]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def config_file(self) -> Path:
        return config_file_path(self.data_dir)

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log filter that masks them."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)
            elif isinstance(value, dict):  # e.g. an MCP server's environment
                for item in value.values():
                    walk(item)

        walk(self)
        return found


def secret_field_paths(model: type[BaseModel] = Settings) -> frozenset[tuple[str, ...]]:
    """The path of every ``SecretStr`` field (``("telegram", "token")``, ...), for the backup's
    redaction: a secret added to any section is covered without a list to keep in step."""
    found: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found |= {(name, *rest) for rest in secret_field_paths(ann)}
        elif ann is SecretStr or SecretStr in get_args(ann):
            found.add((name,))
    return frozenset(found)


def config_file_path(data_dir: Any = None) -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = Path(data_dir) if data_dir else Path(os.environ.get(DATA_DIR_ENV) or default_data_dir())
    return base.expanduser() / "familiar.toml"


def _nest(values: dict[tuple[str, str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (section, key), value in values.items():
        out.setdefault(section, {})[key] = value
    return out


class CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from ``$CREDENTIALS_DIRECTORY/<name>``, as systemd's ``LoadCredential=`` leaves them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(
                f"CREDENTIALS_DIRECTORY is set to {root}, which is not a readable directory",
                "check the LoadCredential= lines of the systemd unit, or unset CREDENTIALS_DIRECTORY",
            )
        values: dict[tuple[str, str], str] = {}
        for name, target in CREDENTIALS.items():
            path = root / name
            if not path.exists():
                continue
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"credential file {path} cannot be read ({exc.strerror})",
                    f"make {path} readable by the daemon's user",
                ) from None
            # A blank credential is the unit's SetCredential= fallback for a missing file: unset.
            if value:
                values[target] = value
        return _nest(values)


class SdkEnvSource(PydanticBaseSettingsSource):
    """``ANTHROPIC_API_KEY`` and ``OPENAI_API_KEY``, which people set for the SDKs anyway."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _nest({t: os.environ[name] for name, t in SDK_ENV.items() if os.environ.get(name)})


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One plain sentence per problem, naming the setting as a key and as a variable."""
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        key = ".".join(str(p) for p in loc) or "(settings)"
        msg = str(err.get("msg", "invalid")).removeprefix(
            "Value error, "
        )  # our validators' own words
        if err.get("type") == "extra_forbidden":
            msg = "is not a known setting (a typo?)"
            problems.append(f"{key} {msg}")
            continue
        given = err.get("input")
        # Any secret field of the model, credential or not (a union adds parts to the location).
        secret = any(tuple(map(str, loc[:n])) in secret_field_paths() for n in range(len(loc) + 1))
        shown = "" if secret or isinstance(given, dict) else f" (got {given!r})"
        problems.append(f"{key}: {msg}{shown}; set it in the TOML file or as {_env_name(loc)}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; every problem is reported together as one ConfigError."""
    path = config_file_path(overrides.get("data_dir"))
    if os.environ.get(CONFIG_ENV) and not path.is_file():
        raise ConfigError(
            f"configuration file {path} (from {CONFIG_ENV}) does not exist",
            f"create it (`familiar config example > {path}`) or unset {CONFIG_ENV}",
        )
    # Unknown keys and bad values are reported together, so one run of `config check` lists all.
    # A setting a release removed only warns: an upgrade must not stop a daemon that starts.
    unknown = []
    for key in unknown_file_keys(path) if path.is_file() else []:
        if key in RETIRED:
            logger.warning("setting {} in {} has no effect any more: {}", key, path, RETIRED[key])
        else:
            unknown.append(f"{key} is not a known setting (a typo?)")
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = unknown + describe_validation_error(exc)
        raise ConfigError(
            "invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems),
            "correct the settings above (`familiar config example` lists every setting), "
            "then run `familiar config check`",
        ) from None
    except ConfigError:
        raise
    except SettingsError as exc:
        raise ConfigError(
            f"a {ENV_PREFIX}* environment variable cannot be parsed ({exc})",
            "lists are written as JSON ([1, 2]) or comma-separated ids; check the variable named",
        ) from None
    except (ValueError, OSError) as exc:  # a TOML syntax error surfaces as a ValueError
        raise ConfigError(
            f"configuration file {path} cannot be read: {exc}",
            "fix its TOML syntax (`familiar config example` shows every setting)",
        ) from None
    if unknown:
        raise ConfigError(
            f"configuration file {path} has settings Familiar does not know:\n"
            + "\n".join(f"  - {p}" for p in unknown),
            "remove or correct them (`familiar config example` lists every setting)",
        )
    return settings


# Settings that earlier releases read and this one does not: what took their place.
RETIRED = {
    "tools.fetch_max_chars": "web pages are cut once, to tools.untrusted_max_chars",
    "tools.mcp_result_max_chars": "MCP results are cut once, to tools.untrusted_max_chars",
}


def unknown_file_keys(path: Path) -> list[str]:
    """Keys in the TOML file that no settings model declares (sections ignore extras otherwise)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []  # reported with its position when the settings are read

    def walk(model_cls: type[BaseModel], values: dict[str, Any], prefix: str) -> list[str]:
        found = []
        for key, value in values.items():
            info = model_cls.model_fields.get(key)
            if info is None:
                found.append(prefix + key)
            elif (
                isinstance(value, dict)
                and isinstance(info.annotation, type)
                and issubclass(info.annotation, BaseModel)
            ):
                found += walk(info.annotation, value, f"{prefix}{key}.")
        return found

    return walk(Settings, data, "")


def _toml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):  # an inline table
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def render_example() -> str:
    """A commented TOML file with every setting, its description and its default."""
    lines = [
        "## Familiar configuration. Every setting is shown commented out with its default.",
        f"## Environment variables override this file: {ENV_PREFIX}<SECTION>__<KEY>.",
        "## Secrets (tokens, API keys) are better kept out of this file: use systemd credentials",
        "## (LoadCredential=telegram_token:...) or environment variables.",
        "",
    ]

    def field_lines(model_cls: type[BaseModel]) -> list[str]:
        out = []
        for name, info in model_cls.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                continue
            if info.description:
                out.append(f"## {info.description}")
            if name == "data_dir":
                out.append(f'# data_dir = "{default_data_dir()}"  # set it with {DATA_DIR_ENV}')
                continue
            default = info.get_default(call_default_factory=True)
            if default is None:
                out.append(f'# {name} = ""  # unset')
            else:
                out.append(f"# {name} = {_toml_value(default)}")
        return out

    lines += field_lines(Settings)
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            lines += ["", f"[{name}]"] + field_lines(section)
    return "\n".join(lines) + "\n"
