"""Errors of the jobs package: the few things about backups, restores and reminders a person can fix."""

from memory.errors import FamiliarError


class BackupError(FamiliarError):
    """A backup could not be written (disk full, unreadable data directory, ...)."""


class VerifyError(FamiliarError):
    """An archive is truncated, tampered with or otherwise unusable; the message names the bad file."""


class RestoreError(FamiliarError):
    """A restore was refused or could not finish; the data directory is left as it was."""


class ReminderError(FamiliarError):
    """A reminder time or schedule that cannot be used; the message carries examples."""
