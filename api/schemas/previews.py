"""The request body of POST /v1/previews (for the OpenAPI document: the route reads its body
as a stream, so FastAPI cannot derive it)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PreviewForm(BaseModel):
    """POST /v1/previews as multipart/form-data."""

    file: bytes = Field(description="The PDF, as it would be sent to POST /v1/jobs (20 MB).")
    page: int = Field(default=1, ge=1, description="The page to draw, from 1.")
