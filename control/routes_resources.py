"""``/v1.0`` agents, accesskeys, webhooks, events (conferences: routes_conferences.py)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from control.agent_secrets import masked, restored
from control.api import Api, ApiError, Ctx, not_found
from control.auth import Role, access_key_cache_key, new_access_key
from control.db import DatabaseError
from control.mcp_servers import unusable_stdio_entries
from control.routes_calls import page_args, public
from control.schemas import AccessKeyBody, AgentBody, WebhookBody
from control.store import Store

_AGENT_COLUMNS = {"name", "is_default"}
Shown = Callable[[dict[str, Any]], dict[str, Any]]


def agent_public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("detail", "tm_delete")}
    out["is_default"] = bool(row["is_default"])
    return {**out, **masked(row["detail"])}


def accesskey_public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("token_hash", "tm_delete")}


def webhook_public(row: dict[str, Any]) -> dict[str, Any]:
    out = public(row)
    out["secret"] = row["secret"][:6] + "..." if row["secret"] else ""
    out["tls_verify"] = bool(row.get("tls_verify", True))
    return out


async def _write_agent(
    store: Store, customer_id: str, body: AgentBody, stored: dict[str, Any] | None
) -> str:
    """Agent row (``stored``: the row it replaces, whose secrets a PUT's hints keep), its routes
    and the default flag in one transaction (all or nothing), then the cache entries of every
    agent it changed."""
    agent_id = None if stored is None else str(stored["id"])
    detail = body.model_dump(exclude=_AGENT_COLUMNS)
    if stored is not None:
        detail = restored(detail, stored["detail"])
    values = {"name": body.name, "is_default": int(body.is_default), "detail": detail}
    statements: list[tuple[str, Any]] = []
    touched: list[str] = []
    if body.is_default:
        touched = [
            a["id"] for a in await store.find("agents", customer_id=customer_id, is_default=1)
        ]
        statements.append(
            (
                "UPDATE {p}agents SET is_default = 0 WHERE customer_id = ? AND is_default = 1",
                [customer_id],
            )
        )
    if agent_id is None:
        row, sql, params = store.insert_statement("agents", {"customer_id": customer_id, **values})
        agent_id = row["id"]
    else:
        sql, params = store.update_statement("agents", agent_id, customer_id, values)
        statements.append(("DELETE FROM {p}agent_routes WHERE agent_id = ?", [agent_id]))
        touched.append(agent_id)
    statements.append((sql, params))
    for kind, items in (
        ("audiosocket", body.routes.audiosocket_uuids),
        ("number", body.routes.numbers),
    ):
        for value in items:
            _, route_sql, route_params = store.insert_statement(
                "agent_routes",
                {
                    "customer_id": customer_id,
                    "agent_id": agent_id,
                    "kind": kind,
                    "value": value.lower(),
                },
            )
            statements.append((route_sql, route_params))
    try:
        await store.db.transaction(statements)
    except DatabaseError as exc:
        raise ApiError(
            409,
            "conflict",
            "a route (UUID or number) belongs to another agent",
            [{"field": "routes", "message": "already in use"}],
        ) from exc
    for changed in touched:
        await store.invalidate("agents", changed)
    return agent_id


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def register_reads(
    api: Api,
    table: str,
    base: str,
    noun: str,
    shown: Shown,
    role: Role,
    filters: tuple[str, ...] = (),
) -> None:
    """``GET base`` (paginated, exact-match ``filters``) and ``GET base/<id>`` for ``table``."""
    store = api.services.store
    id_param = f"{table[:-1]}_id"

    @api.route(
        "GET",
        base,
        summary=f"List {noun}s, newest first",
        role=role,
        query=("page_size", "page_token", *filters),
    )
    async def list_rows(ctx: Ctx) -> dict[str, Any]:
        size, token = page_args(ctx)
        equal = {f: ctx.args[f] for f in filters if ctx.args.get(f)}
        page = await store.list(table, ctx.principal.customer_id, size, token, **equal)
        return {"result": [shown(r) for r in page.rows], "next_page_token": page.next_page_token}

    @api.route("GET", f"{base}/<{id_param}>", summary=f"Get {_with_article(noun)}", role=role)
    async def get_row(ctx: Ctx, **ids: str) -> dict[str, Any]:
        row = await store.get(table, ids[id_param], ctx.principal.customer_id)
        if row is None:
            raise not_found(noun)
        return shown(row)


def register(api: Api) -> None:
    store = api.services.store

    async def owned(ctx: Ctx, table: str, row_id: str) -> dict[str, Any]:
        row = await store.get(table, row_id, ctx.principal.customer_id)
        if row is None:
            raise not_found(table[:-1])
        return row

    async def listing(ctx: Ctx, table: str, **filters: Any) -> tuple[list[Any], str]:
        size, token = page_args(ctx)
        page = await store.list(table, ctx.principal.customer_id, size, token, **filters)
        return page.rows, page.next_page_token

    # plain list (paginated, newest first) and get, the same for every resource
    reads: tuple[tuple[str, str, str, Shown, Role, tuple[str, ...]], ...] = (
        ("agents", "/v1.0/agents", "agent", agent_public, "agent_user", ()),
        ("accesskeys", "/v1.0/accesskeys", "access key", accesskey_public, "customer_admin", ()),
        ("webhooks", "/v1.0/webhooks", "webhook", webhook_public, "customer_admin", ()),
        ("events", "/v1.0/events", "event", public, "agent_user", ("type",)),
    )
    for table, base, noun, shown, role, filters in reads:
        register_reads(api, table, base, noun, shown, role, filters)

    # -- agents ---------------------------------------------------------------------------------
    def check_mcp(ctx: Ctx) -> None:
        """A stdio MCP server must be one the operator offers this customer (mcp_servers.py)."""
        fields = unusable_stdio_entries(
            api.services.cfg.mcp_stdio, ctx.principal.customer_id, ctx.body.model_dump()["tools"]
        )
        if fields:
            raise ApiError(400, "invalid_request", "request body failed validation", fields)

    @api.route(
        "POST",
        "/v1.0/agents",
        summary="Create an agent",
        body=AgentBody,
        role="customer_manager",
        status=201,
    )
    async def create_agent(ctx: Ctx) -> dict[str, Any]:
        check_mcp(ctx)
        agent_id = await _write_agent(store, ctx.principal.customer_id, ctx.body, None)
        return agent_public(await owned(ctx, "agents", agent_id))

    @api.route(
        "PUT",
        "/v1.0/agents/<agent_id>",
        summary="Replace an agent",
        body=AgentBody,
        role="customer_manager",
    )
    async def put_agent(ctx: Ctx, agent_id: str) -> dict[str, Any]:
        stored = await owned(ctx, "agents", agent_id)
        check_mcp(ctx)
        await _write_agent(store, ctx.principal.customer_id, ctx.body, stored)
        return agent_public(await owned(ctx, "agents", agent_id))

    @api.route(
        "DELETE", "/v1.0/agents/<agent_id>", summary="Delete an agent", role="customer_manager"
    )
    async def delete_agent(ctx: Ctx, agent_id: str) -> dict[str, Any]:
        row = await owned(ctx, "agents", agent_id)
        await store.db.transaction(
            [
                ("DELETE FROM {p}agent_routes WHERE agent_id = ?", [agent_id]),
                store.delete_statement("agents", agent_id, ctx.principal.customer_id),
            ]
        )
        await store.invalidate("agents", agent_id)
        return agent_public(row)

    # -- access keys ----------------------------------------------------------------------------
    @api.route(
        "POST",
        "/v1.0/accesskeys",
        summary="Create an access key (token shown once)",
        body=AccessKeyBody,
        role="customer_admin",
        status=201,
    )
    async def create_key(ctx: Ctx) -> dict[str, Any]:
        body: AccessKeyBody = ctx.body
        token, digest, prefix = new_access_key()
        expire = None
        if body.expire_s is not None:
            expire = (datetime.now(UTC) + timedelta(seconds=body.expire_s)).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            )
        row = await store.insert(
            "accesskeys",
            {
                "customer_id": ctx.principal.customer_id,
                "name": body.name,
                "role": body.role,
                "token_hash": digest,
                "token_prefix": prefix,
                "tm_expire": expire,
            },
        )
        return {**accesskey_public(row), "token": token}

    @api.route(
        "DELETE",
        "/v1.0/accesskeys/<accesskey_id>",
        summary="Revoke an access key",
        role="customer_admin",
    )
    async def delete_key(ctx: Ctx, accesskey_id: str) -> dict[str, Any]:
        row = await owned(ctx, "accesskeys", accesskey_id)
        await store.delete("accesskeys", accesskey_id, ctx.principal.customer_id)
        if store.cache is not None:  # database first, then the cache: revocation is immediate
            await store.cache.delete(access_key_cache_key(store, row["token_hash"]))
        return accesskey_public(row)

    # -- webhooks -------------------------------------------------------------------------------
    @api.route(
        "POST",
        "/v1.0/webhooks",
        summary="Create a webhook (secret shown once)",
        body=WebhookBody,
        role="customer_admin",
        status=201,
    )
    async def create_webhook(ctx: Ctx) -> dict[str, Any]:
        body: WebhookBody = ctx.body
        secret = body.secret or "whsec_" + secrets.token_urlsafe(24)
        row = await store.insert(
            "webhooks",
            {
                "customer_id": ctx.principal.customer_id,
                "url": body.url,
                "secret": secret,
                "event_types": list(body.event_types),
                "tls_verify": body.tls_verify,
            },
        )
        return {**webhook_public(row), "secret": secret}

    @api.route(
        "DELETE", "/v1.0/webhooks/<webhook_id>", summary="Delete a webhook", role="customer_admin"
    )
    async def delete_webhook(ctx: Ctx, webhook_id: str) -> dict[str, Any]:
        row = await owned(ctx, "webhooks", webhook_id)
        await store.delete("webhooks", webhook_id, ctx.principal.customer_id)
        return webhook_public(row)

    @api.route(
        "GET",
        "/v1.0/webhooks/<webhook_id>/deliveries",
        summary="Delivery attempts",
        query=("page_size", "page_token"),
        role="customer_admin",
    )
    async def list_deliveries(ctx: Ctx, webhook_id: str) -> dict[str, Any]:
        await owned(ctx, "webhooks", webhook_id)
        rows, token = await listing(ctx, "deliveries", webhook_id=webhook_id)
        return {"result": [public(r) for r in rows], "next_page_token": token}
