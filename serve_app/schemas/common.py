"""Base models: requests accept snake_case and camelCase; responses are snake_case (API.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class RequestModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
        extra="ignore",
    )


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
