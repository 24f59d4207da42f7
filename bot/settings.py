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
    mode: Literal["polling", "webhook"] = Field(
        "polling", description="How updates arrive: long polling, or a webhook Telegram calls."
    )
    poll_timeout_s: int = Field(
        25, ge=0, le=50, description="Long-polling timeout of getUpdates, in seconds."
    )
    poll_idle_s: float = Field(
        0.2,
        ge=0,
        le=10,
        description="Pause after an empty getUpdates answer that came back early (servers that do not long-poll).",
    )
    webhook_listen: str = Field(
        "127.0.0.1:8443",
        description="Webhook mode: address:port the daemon listens on (behind a TLS proxy).",
    )
    webhook_url: str | None = Field(
        None, description="Webhook mode: the public HTTPS URL Telegram posts updates to."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Webhook mode: secret_token Telegram sends with every request (secret; generated when unset).",
    )
    webhook_max_connections: int = Field(
        64,
        ge=1,
        le=10000,
        description="Webhook requests with the right secret served at once; more get 503 at once "
        "(Telegram retries them). Connections still sending headers are held apart, up to four "
        "times as many, the oldest dropped first.",
    )
    webhook_read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Seconds a webhook client has to send its whole request (else 408).",
    )
    user_burst: int = Field(
        8,
        ge=0,
        description="Messages a user may send at once before the rate limit applies (0: no limit).",
    )
    user_per_minute: float = Field(
        20.0, gt=0, description="Messages per minute a user's allowance refills by."
    )
    chat_send_interval_s: float = Field(
        1.0, ge=0, le=10, description="Least time between two messages the bot sends to one chat."
    )
    global_max_per_s: float = Field(
        30.0,
        ge=0,
        description="Messages per second the bot sends overall (PTB's AIORateLimiter; 0 turns it off).",
    )
    edit_interval_s: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Least time between two edits of one message while an answer streams.",
    )
    invite_ttl_h: float = Field(
        48.0, gt=0, description="Hours an invite code made by /invite stays valid."
    )
    refusal_interval_s: float = Field(
        3600.0, ge=0, description="Least time between two refusals sent to the same stranger."
    )
    audit_keep_days: int = Field(
        90,
        ge=1,
        description="Days the access audit (what strangers tried, never their text) is kept; "
        "older rows are pruned daily, at the backup's time.",
    )
    admin_alert_interval_s: float = Field(
        600.0,
        ge=0,
        description="Least time between two admin notifications about the same kind of error.",
    )
    max_concurrent_updates: int = Field(
        16,
        ge=1,
        description="Updates handled at once (one chat's updates are always handled in order).",
    )
    burst_window_s: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="How long a forwarded message waits for the rest of its batch, so several "
        "forwarded at once get one answer, from the last.",
    )
    edit_answer_window_s: float = Field(
        900.0,
        ge=0.0,
        description="An edited message is answered again when it is the chat's newest and was "
        "edited within this many seconds of being sent (0: never); any edit corrects memory.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Times an update is tried (across restarts) before it is given up as failed.",
    )
    retry_max_s: float = Field(
        60.0,
        gt=0,
        description="Longest wait between two tries to reach Telegram when it is unreachable.",
    )
    feedback_max_age_days: float = Field(
        30.0, gt=0, description="Days after which the feedback buttons of an answer stop working."
    )
    ask_feedback_reason: bool = Field(
        True, description="After a 👎, ask (optionally) what was wrong."
    )

    _split = field_validator("allowed_users", "admins", mode="before")(split_ids)


class LogSettings(BaseModel):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level logged."
    )
    json_lines: bool = Field(False, description="Log one JSON object per line instead of text.")


class DaemonSettings(BaseModel):
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest a graceful shutdown may take before it is cut short.",
    )
