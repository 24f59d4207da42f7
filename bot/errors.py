"""Errors that end the daemon or a CLI command with one clear message for a person."""

from memory.errors import DatabaseError, DataDirError, FamiliarError

__all__ = ["ConfigError", "DataDirError", "DatabaseError", "FamiliarError", "TelegramTokenRejected"]


class ConfigError(FamiliarError):
    """The configuration is invalid or incomplete."""


class TelegramTokenRejected(ConfigError):
    """Telegram answered 401: the token is wrong or revoked."""
