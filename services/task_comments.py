"""Comments on tasks. Each mention notifies the mentioned user, who must be able to see the
task: a mention never tells anyone about a task they could not open."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, ValidationFailed
from persistence.models import TaskComment, User
from persistence.repositories import users as users_repo
from services import events, notifications, tasks
from services.principal import Principal, Role


def add_comment(session: Session, principal: Principal, task_id: str, content: str, mentions: list[str]) -> TaskComment:
    task = tasks.get_task(session, principal, task_id)
    mentioned = [_mentioned_user(session, task, ref, f"mentions[{i}]") for i, ref in enumerate(mentions)]
    user_ids = list(dict.fromkeys(user.id for user in mentioned))
    comment = TaskComment(task_id=task.id, author_id=principal.user_id, content=content, mentions=user_ids)
    session.add(comment)
    session.flush()
    for user_id in user_ids:
        if user_id != principal.user_id:
            notifications.notify(
                session,
                user_id,
                "mention",
                f"You were mentioned on task: {task.title}",
                message=content[:500],
                task_id=task.id,
                comment_id=comment.id,
                author=principal.user_id,
            )
    events.emit(
        session,
        "task.updated",
        {**tasks.summary(task), "changed": ["comments"], "comment_id": comment.id},
        source="tasks",
        owner=task,
        subject_id=task.id,
    )
    return comment


def comments_query(task_id: str) -> Select[tuple[TaskComment]]:
    """A task's comments, oldest first (the conversation's order)."""
    return select(TaskComment).where(TaskComment.task_id == task_id).order_by(TaskComment.created_at, TaskComment.id)


def get_comment(session: Session, principal: Principal, task_id: str, comment_id: str) -> TaskComment:
    return tasks.get_attached(session, principal, task_id, TaskComment, comment_id, "Comment")


def list_comments(session: Session, task_id: str) -> list[TaskComment]:
    return list(session.scalars(comments_query(task_id)))


def _mentioned_user(session: Session, task: Any, ref: str, where: str) -> User:
    """A mention by user id or email, of an active user who can see the task."""
    user = users_repo.get_user_by_email(session, ref.lower()) if "@" in ref else users_repo.get_user(session, ref)
    if user is not None and user.is_active:
        as_principal = Principal(user_id=user.id, role=Role.parse(user.role))
        if tasks.can_see_task(session, as_principal, task):
            return user
    raise ValidationFailed("Unknown mention", details=[FieldIssue(where, "no user who can see this task")])
