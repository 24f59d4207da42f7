"""Errors of the agents package. Each says what happened in words a user can be shown."""

from memory.errors import FamiliarError


class LLMError(FamiliarError):
    """A model call did not produce an answer."""


class ProviderUnavailable(LLMError):
    """The provider is overloaded, down, timing out, or the breaker is open: try again later."""


class ProviderRejected(LLMError):
    """The provider refused the request for a reason retrying will not fix (bad request)."""


class ProviderAuthError(LLMError):
    """Authentication failed or the spend limit is reached: an admin must act; never retried."""


class BudgetExceeded(LLMError):
    """The user's daily token budget is spent; checked before the call is made."""


class DeadlineExceeded(ProviderUnavailable):
    """The answer did not finish within its overall deadline."""


class BadModelOutput(LLMError):
    """The model returned something unusable (empty, refused, malformed JSON)."""
