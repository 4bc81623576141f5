"""Saved agent configurations and templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from persistence.models import Configuration
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text
from services import ownership
from services.principal import Principal


def create_configuration(session: Session, principal: Principal, data: dict[str, Any]) -> Configuration:
    owner_type, owner_id = ownership.resolve_owner(
        session, principal, data.pop("owner_type", None), data.pop("owner_id", None)
    )
    configuration = Configuration(owner_type=owner_type, owner_id=owner_id, created_by=principal.user_id, **data)
    session.add(configuration)
    session.flush()
    return configuration


def list_configurations(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    framework: str | None = None,
    template: bool | None = None,
    public: bool | None = None,
    search: str | None = None,
) -> Page[Configuration]:
    """The caller's and their organizations' configurations; `public=true` adds everyone's public ones."""
    query = select(Configuration).order_by(Configuration.created_at.desc(), Configuration.id.desc())
    scope = ownership.visible_to if public else ownership.owned_by
    query = query.where(scope(Configuration, principal))
    if framework:
        query = query.where(Configuration.framework == framework)
    if template is not None:
        query = query.where(Configuration.is_template.is_(template))
    if search:
        query = query.where(matches_text(search, Configuration.name, Configuration.description))
    return fetch_page(session, query, page=page, limit=limit)


def update_configuration(
    session: Session, principal: Principal, configuration_id: str, changes: dict[str, Any]
) -> Configuration:
    configuration = ownership.get_writable(session, Configuration, configuration_id, principal)
    for field, value in changes.items():
        setattr(configuration, field, value)
    session.flush()
    return configuration


def delete_configuration(session: Session, principal: Principal, configuration_id: str) -> None:
    session.delete(ownership.get_writable(session, Configuration, configuration_id, principal))


def record_use(session: Session, principal: Principal, configuration_id: str) -> Configuration:
    """The configuration an agent is created from (visible to the caller); counts the use atomically."""
    configuration = ownership.get_visible(session, Configuration, configuration_id, principal)
    session.execute(
        update(Configuration)
        .where(Configuration.id == configuration.id)
        .values(usage_count=Configuration.usage_count + 1)
    )
    return configuration
