"""Saved agent configurations and templates (`/configurations`, docs/api.md "Agents")."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from persistence.models import Configuration
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.agents import ConfigurationCreate, ConfigurationList, ConfigurationOut, ConfigurationUpdate
from serve_app.schemas.common import MessageResponse
from services import configurations, ownership

router = protected_router(prefix="/configurations", tags=["configurations"], resource="configurations")


@router.get("", response_model=ConfigurationList)
def list_configurations(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    framework: Annotated[str | None, Query(max_length=32)] = None,
    template: Annotated[bool | None, Query(description="templates only (true) or no templates (false)")] = None,
    public: Annotated[bool | None, Query(description="also include everyone's public configurations")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> dict:
    with context.db.session() as session:
        page = configurations.list_configurations(
            session,
            principal,
            page=params.page,
            limit=params.limit,
            framework=framework.lower() if framework else None,
            template=template,
            public=public,
            search=search,
        )
        items = [ConfigurationOut.model_validate(item) for item in page.items]
    return paginated(request, "configurations", items, page)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConfigurationOut)
def create_configuration(
    body: ConfigurationCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> ConfigurationOut:
    with context.db.transaction() as session:
        created = configurations.create_configuration(session, principal, body.model_dump())
        result = ConfigurationOut.model_validate(created)
    response.headers["Location"] = f"/api/v1/configurations/{result.id}"
    return result


@router.get("/{configuration_id}", response_model=ConfigurationOut)
def get_configuration(configuration_id: str, principal: CurrentPrincipal, context: Context) -> ConfigurationOut:
    with context.db.session() as session:
        return ConfigurationOut.model_validate(
            ownership.get_visible(session, Configuration, configuration_id, principal)
        )


@router.put("/{configuration_id}", response_model=ConfigurationOut)
def update_configuration(
    configuration_id: str, body: ConfigurationUpdate, principal: CurrentPrincipal, context: Context
) -> ConfigurationOut:
    changes = {key: value for key, value in body.model_dump(exclude_unset=True).items() if value is not None}
    with context.db.transaction() as session:
        updated = configurations.update_configuration(session, principal, configuration_id, changes)
        return ConfigurationOut.model_validate(updated)


@router.delete("/{configuration_id}", response_model=MessageResponse)
def delete_configuration(configuration_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        configurations.delete_configuration(session, principal, configuration_id)
    return MessageResponse(message="Configuration deleted successfully")
