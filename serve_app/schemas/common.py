"""Base models: requests accept snake_case and camelCase; responses are snake_case (docs/api.md "Conventions")."""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from core.clock import as_utc


class RequestModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
        extra="ignore",
    )

    @model_validator(mode="after")
    def _times_in_utc(self) -> Self:
        """A time given with an offset is kept as the same instant in UTC (one without a zone, or a date
        alone, is taken as UTC), so that what is stored, and echoed back at once, is what docs/api.md
        "Conventions" promises: UTC, written with `Z`."""
        for name in type(self).model_fields:
            value = self.__dict__.get(name)
            if isinstance(value, datetime):
                self.__dict__[name] = as_utc(value)
        return self


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MessageResponse(ResponseModel):
    message: str


class ErrorDetail(ResponseModel):
    field: str
    message: str


class ErrorBody(ResponseModel):
    code: str = Field(examples=["VALIDATION_ERROR"])
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    timestamp: datetime
    correlation_id: str


class ErrorResponse(ResponseModel):
    error: ErrorBody


class PaginationInfo(ResponseModel):
    page: int
    limit: int
    total: int
    pages: int
    has_next: bool
    has_prev: bool


class PaginationLinks(ResponseModel):
    first: str
    last: str
    next: str | None
    prev: str | None
