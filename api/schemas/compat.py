"""What the compatible APIs (u1, DumplingAI) add to their references, the same in both."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from db.models import JobPriority


class AnswerAtOnceFields(BaseModel):
    """Beyond the references: answer 202 with the job id at once instead of waiting."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    webhook_url: str | None = Field(
        default=None,
        description="Not in the reference: answer 202 with the job id at once and announce "
        "the job's end to this URL.",
    )
    async_: bool = Field(
        default=False,
        alias="async",
        description="Not in the reference: answer 202 with the job id at once.",
    )
    priority: Literal["interactive", "normal", "batch"] | None = Field(
        default=None,
        description="Not in the reference: which images run first. Default: interactive "
        "while the caller waits for the answer, normal with async or a webhook; batch for "
        "nightly work that may wait for everyone else.",
    )

    @property
    def answers_at_once(self) -> bool:
        return self.async_ or self.webhook_url is not None

    def job_priority(self, *, async_query: bool) -> JobPriority:
        """The priority asked for, or interactive when the caller waits for the answer."""
        if self.priority is not None:
            return JobPriority(self.priority)
        if async_query or self.answers_at_once:
            return JobPriority.NORMAL
        return JobPriority.INTERACTIVE

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value
