"""Base models: requests accept snake_case and camelCase; responses are snake_case (docs/api.md "Conventions")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from core.clock import as_utc
from services.ownership import USER


def not_nullable(*fields: str) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """The `json_schema_extra` of an update model whose `fields` may be left out but not cleared: their columns
    cannot be NULL and the route answers a null 422 (serve_app.pagination.refuse_nulls), so the OpenAPI does not
    offer null for them."""

    def drop_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
        properties = schema.get("properties", {})
        for name in fields:
            alias = model.model_fields[name].alias
            prop = properties[alias] if alias in properties else properties[name]
            options = [option for option in prop.pop("anyOf", [prop.copy()]) if option != {"type": "null"}]
            if len(options) == 1:
                prop.update(options[0])
            else:
                prop["anyOf"] = options
            if "default" in prop and prop["default"] is None:
                del prop["default"]

    return drop_null


# A text that must not be empty once stripped (`str_strip_whitespace` below): at least one other character.
NOT_BLANK = r"\S"


def _not_blank(schema: Any) -> None:
    """`pattern: \\S` on every string of `schema` (a property's, its options', its items') that has a minimum length
    and no pattern of its own: the request is stripped before the length is checked, so that "   " is as empty as ""
    (nested models are their own schemas, and do this themselves)."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and schema.get("minLength", 0) >= 1 and "pattern" not in schema:
        schema["pattern"] = NOT_BLANK
    for option in schema.get("anyOf", ()):
        _not_blank(option)
    _not_blank(schema.get("items"))
    _not_blank(schema.get("additionalProperties"))


def names_its_organization(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The `json_schema_extra` of a create that takes `owner_type` and `owner_id`: a resource created for an
    organization names it (services.ownership.resolve_owner answers 422 naming `owner_id` otherwise), that is, the
    owner is the caller (no owner_type, or `user`) or owner_id is given."""
    owner_type, owner_id = (model.model_fields[name].alias or name for name in ("owner_type", "owner_id"))
    schema["anyOf"] = [
        {
            "properties": {
                owner_type: {"anyOf": [{"type": "null"}, {"type": "string", "pattern": rf"(?i)^\s*{USER}\s*$"}]}
            }
        },
        {"required": [owner_id], "properties": {owner_id: {"type": "string", "pattern": NOT_BLANK}}},
    ]


class RequestModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
        extra="ignore",
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        for prop in handler.resolve_ref_schema(schema).get("properties", {}).values():
            _not_blank(prop)
        return schema

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
