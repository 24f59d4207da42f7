"""Errors of the training pipeline; each says what went wrong and what a person can do."""

from memory.errors import FamiliarError


class TrainingError(FamiliarError):
    """A training run cannot start or cannot finish."""


class BaseModelError(TrainingError):
    """The base model directory is missing or does not hold a causal language model."""


class DatasetError(TrainingError):
    """The training data is unreadable, malformed, or empty."""


class OutOfMemoryRetriesExhausted(TrainingError):
    """CUDA ran out of memory even after shrinking the micro-batch as far as allowed."""


class Cancelled(TrainingError):
    """The run was asked to stop (cancel, SIGTERM); its last checkpoint is kept."""


class RegistryError(FamiliarError):
    """An adapter name, version or file is unsafe or inconsistent; nothing was written."""


class JobError(FamiliarError):
    """A training job does not exist or is in a state that does not allow the request."""


class StageRejected(TrainingError):
    """A pipeline stage decided against going on (a review rejected, the data set came out empty,
    the adapter was not better, a job failed): trying the stage again at once changes nothing, so
    the pipeline fails without the retries an unexpected error gets."""
