"""Settings owned by the jobs package (``[jobs]``, ``FAMILIAR_JOBS__*``)."""

from pydantic import BaseModel, Field


class JobsSettings(BaseModel):
    timezone: str = Field("UTC", description="Time zone of schedules and reminders (IANA name).")
    health_interval_s: int = Field(300, ge=10, description="Seconds between scheduled health checks.")
    min_free_disk_mb: int = Field(
        500, ge=0, description="Free space in the data directory below which health is degraded."
    )
