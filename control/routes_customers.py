"""``/v1.0/customers``: the platform admin's view of every customer (VoIPBIN's customer shape).

Only a ``platform_admin`` principal reaches these routes (403 for everyone else); every other
route stays scoped to the caller's own customer, a platform admin's included, so isolation is
unchanged. A customer is never deleted, only disabled (control/customers.py): its rows remain
for the record and its id is never reused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from control.api import Api, ApiError, Ctx, not_found
from control.bootstrap import create_access_key
from control.customers import customer_public, disable_customer
from control.routes_calls import page_args, status_filter
from control.routes_resources import accesskey_public
from control.schemas import AccessKeyBody, Body, Name

CUSTOMER_STATUSES = ("active", "disabled")
_TS = "%Y-%m-%d %H:%M:%S.%f"


def _email(value: str) -> str:
    local, at, domain = value.partition("@")
    if value and (not at or not local or "." not in domain or any(c.isspace() for c in value)):
        raise PydanticCustomError("email", "an e-mail address, like ops@example.com")
    return value


Email = Annotated[str, Field(max_length=255), AfterValidator(_email)]
Description = Annotated[str, Field(max_length=1024)]


class CustomerBody(Body):
    name: Name
    email: Email = ""
    description: Description = ""


class CustomerUpdateBody(Body):
    name: Name | None = None
    email: Email | None = None
    description: Description | None = None


class CustomerKeyBody(AccessKeyBody):
    """A key for another customer: any of its roles, never ``platform_admin``."""

    role: Literal["customer_admin", "customer_manager", "agent_user"] = "customer_admin"


def register(api: Api) -> None:
    store, services = api.services.store, api.services

    async def existing(customer_id: str) -> dict[str, Any]:
        row = await store.get("customers", customer_id, None)
        if row is None:
            raise not_found("customer")
        return row

    async def change(customer_id: str, values: dict[str, Any]) -> dict[str, Any]:
        row = await store.update("customers", customer_id, None, values)
        if row is None:
            raise not_found("customer")
        return customer_public(row)

    async def name_free(name: str, customer_id: str = "") -> None:
        if any(r["id"] != customer_id for r in await store.find("customers", name=name)):
            raise ApiError(
                409,
                "name_taken",
                "another customer has this name",
                [{"field": "name", "message": "already in use"}],
            )

    @api.route(
        "POST",
        "/v1.0/customers",
        summary="Create a customer",
        body=CustomerBody,
        role="platform_admin",
        status=201,
    )
    async def create_customer(ctx: Ctx) -> dict[str, Any]:
        body: CustomerBody = ctx.body
        await name_free(body.name)
        customer_id = str(uuid.uuid4())  # a customer row owns itself, as the bootstrap one does
        row = await store.insert(
            "customers",
            {
                "id": customer_id,
                "customer_id": customer_id,
                "status": "active",
                "tm_disable": None,
                **body.model_dump(),
            },
        )
        return customer_public(row)

    @api.route(
        "GET",
        "/v1.0/customers",
        summary="List customers, newest first",
        role="platform_admin",
        query=("page_size", "page_token", "status"),
    )
    async def list_customers(ctx: Ctx) -> dict[str, Any]:
        size, token = page_args(ctx)
        filters = status_filter(ctx, CUSTOMER_STATUSES)
        page = await store.list("customers", None, size, token, **filters)
        return {
            "result": [customer_public(r) for r in page.rows],
            "next_page_token": page.next_page_token,
        }

    @api.route(
        "GET", "/v1.0/customers/<customer_id>", summary="Get a customer", role="platform_admin"
    )
    async def get_customer(ctx: Ctx, customer_id: str) -> dict[str, Any]:
        return customer_public(await existing(customer_id))

    @api.route(
        "PATCH",
        "/v1.0/customers/<customer_id>",
        summary="Update a customer's name, e-mail or description",
        body=CustomerUpdateBody,
        role="platform_admin",
    )
    async def update_customer(ctx: Ctx, customer_id: str) -> dict[str, Any]:
        changes = ctx.body.model_dump(exclude_none=True)
        if "name" in changes:
            await name_free(changes["name"], customer_id)
        return await change(customer_id, changes)

    @api.route(
        "POST",
        "/v1.0/customers/<customer_id>/disable",
        summary="Disable a customer: revoke its keys, refuse its new calls, end its live calls",
        role="platform_admin",
    )
    async def disable(ctx: Ctx, customer_id: str) -> dict[str, Any]:
        await existing(customer_id)
        if customer_id == ctx.principal.customer_id:
            raise ApiError(
                409, "cannot_disable_self", "a platform admin cannot disable its own customer"
            )
        outcome = await disable_customer(services, customer_id)
        return {**customer_public(await existing(customer_id)), **outcome.as_dict()}

    @api.route(
        "POST",
        "/v1.0/customers/<customer_id>/enable",
        summary="Enable a disabled customer again (its revoked keys stay revoked)",
        role="platform_admin",
    )
    async def enable(ctx: Ctx, customer_id: str) -> dict[str, Any]:
        return await change(customer_id, {"status": "active", "tm_disable": None})

    @api.route(
        "POST",
        "/v1.0/customers/<customer_id>/accesskeys",
        summary="Create an access key for a customer (token shown once)",
        body=CustomerKeyBody,
        role="platform_admin",
        status=201,
    )
    async def create_key(ctx: Ctx, customer_id: str) -> dict[str, Any]:
        row = await existing(customer_id)
        if row["status"] != "active":
            raise ApiError(409, "customer_disabled", "the customer is disabled: enable it first")
        body: CustomerKeyBody = ctx.body
        expire = None
        if body.expire_s is not None:
            expire = (datetime.now(UTC) + timedelta(seconds=body.expire_s)).strftime(_TS)
        key, token = await create_access_key(store, customer_id, body.role, body.name, expire)
        return {**accesskey_public(key), "token": token}
