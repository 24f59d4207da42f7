"""Settings owned by the bot package: Telegram, logging and the daemon itself."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

# Ids from the environment may be written "123,456" as well as "[123, 456]".
IdList = Annotated[list[int], NoDecode]


def split_ids(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().removeprefix("[").removesuffix("]")
        return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    return value


class TelegramSettings(BaseModel):
    token: SecretStr | None = Field(
        None,
        description="Bot token from @BotFather (secret: prefer the credential 'telegram_token').",
    )
    base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API base URL (a local Bot API server or an emulator).",
    )
    allowed_users: IdList = Field(
        default_factory=list, description="Telegram user ids allowed to chat (e.g. 123,456)."
    )
    admins: IdList = Field(default_factory=list, description="Telegram user ids of admins.")

    _split = field_validator("allowed_users", "admins", mode="before")(split_ids)


class LogSettings(BaseModel):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level logged."
    )
    json_lines: bool = Field(False, description="Log one JSON object per line instead of text.")


class DaemonSettings(BaseModel):
    shutdown_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Longest a graceful shutdown may take before it is cut short."
    )
