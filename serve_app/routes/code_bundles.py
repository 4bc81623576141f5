"""Code bundles (docs/sdk.md "Python-defined workflows"): the functions a client ships with a workflow,
stored as sent under their SHA-256. The API never deserializes them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request, Response, status

from serve_app.deps import Context, CurrentPrincipal
from serve_app.routing import protected_router
from serve_app.schemas.workflows import CodeBundleOut
from services import code_bundles
from services.principal import Role

router = protected_router(prefix="/code-bundles", tags=["workflows"], resource="workflows", write_role=Role.agent)


@router.put(
    "/{sha256}",
    response_model=CodeBundleOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": CodeBundleOut, "description": "already stored: nothing was uploaded again"},
        413: {"description": "PAYLOAD_TOO_LARGE: larger than ORCHESTRATOR_CODE_BUNDLE_MAX_BYTES"},
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}}
    },
)
async def put_code_bundle(
    # Both checked by code_bundles.put (422 naming the field), after the caller's right to ship code (403).
    sha256: Annotated[
        str,
        Path(
            description="the SHA-256 of the body: 64 lowercase hex digits",
            json_schema_extra={"pattern": code_bundles.SHA256.pattern},
        ),
    ],
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    python: Annotated[
        str,
        Query(
            max_length=20,
            description="the client's Python, major.minor",
            json_schema_extra={"pattern": code_bundles.PYTHON_VERSION.pattern},
        ),
    ],
    functions: Annotated[str, Query(max_length=20_000, description="comma-separated names of the functions")] = "",
) -> dict:
    """Store code for your Python-defined workflows: the body is the bundle's bytes (the SDK's cloudpickle of
    your functions), `sha256` their hash. 201 when stored, 200 when you had already stored it. Only roles in
    `ORCHESTRATOR_CODE_SUBMISSION_ROLES` may ship code (403 otherwise)."""
    code_bundles.check_may_submit(principal, context.settings)
    data = await request.body()
    names = [name for name in functions.split(",") if name]
    with context.db.transaction() as session:
        described, created = code_bundles.put(
            session, principal, context.settings, sha256, data, python=python, functions=names
        )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/code-bundles/{sha256}"
    return described


@router.get("/{sha256}", response_model=CodeBundleOut)
def get_code_bundle(sha256: str, principal: CurrentPrincipal, context: Context) -> dict:
    """Whether you have stored this code (the SDK asks before uploading, so the same code is sent once)."""
    with context.db.session() as session:
        return code_bundles.get(session, principal, sha256)
