"""What the compatible APIs (u1, DumplingAI) add to their references, the same in both."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


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

    @property
    def answers_at_once(self) -> bool:
        return self.async_ or self.webhook_url is not None

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value
