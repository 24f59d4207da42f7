"""Errors of voice transcription. Each says, in words a user can be shown, what went wrong."""

from memory.errors import FamiliarError


class VoiceError(FamiliarError):
    """A voice note could not be turned into text."""


class AudioDecodeError(VoiceError):
    """The file is corrupt, truncated, empty, or in a format we cannot decode."""


class AudioTooLarge(VoiceError):
    """The file is over ``voice.max_bytes`` or its audio over ``voice.max_duration_s``."""


class EngineUnavailable(VoiceError):
    """The configured engine is not installed, its model is missing, or transcription is off.

    The audio itself is fine: keep it, and transcribe it once the setup is fixed.
    """


class FetchError(VoiceError):
    """Downloading the voice note failed."""
