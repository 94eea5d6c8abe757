"""``callbridge db``: apply migrations, show their state, bootstrap, mint access keys.

``callbridge db migrate --db mysql://root@127.0.0.1:3306/test`` is the only way the MariaDB schema
changes; ``serve`` applies migrations itself only on the embedded SQLite default.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import trio

from control.auth import ROLES, inactive_customer
from control.bootstrap import create_access_key, ensure_bootstrap
from control.bridge import AsyncioBridge
from control.config import add_db_arguments, parse_db
from control.db import open_database
from control.db.migrate import applied_versions, load_migrations, migrate
from control.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_arguments(parser)
    sub = parser.add_subparsers(dest="db_command", required=True)
    sub.add_parser("migrate", help="apply pending schema migrations")
    sub.add_parser("status", help="list migrations and whether each is applied")
    sub.add_parser("bootstrap", help="create the default customer, agent and a first admin key")
    customer = sub.add_parser("create-customer", help="create a customer (prints its id)")
    customer.add_argument("--name", required=True)
    customer.add_argument("--email", default="")
    key = sub.add_parser(
        "create-accesskey", help="mint a key for an existing, active customer (printed once)"
    )
    key.add_argument("--customer-id", required=True)
    key.add_argument("--role", choices=ROLES, default="customer_admin")
    key.add_argument("--name", default="cli")
    key.add_argument(
        "--expire",
        default=None,
        metavar="'YYYY-MM-DD HH:MM:SS.ffffff'",
        help="UTC expiry (default never)",
    )


def run(ns: argparse.Namespace) -> int:
    return trio.run(_run, ns)


async def _run(ns: argparse.Namespace) -> int:
    url, prefix = parse_db(ns)
    bridge = AsyncioBridge()
    try:
        async with open_database(url, prefix, bridge) as db:
            if ns.db_command == "migrate":
                done = await migrate(db)
                _out({"applied": [f"{m.version:04d}_{m.name}" for m in done], "db": url.redacted()})
                return 0
            if ns.db_command == "status":
                have = await applied_versions(db)
                _out(
                    {
                        "migrations": [
                            {"version": m.version, "name": m.name, "applied": m.version in have}
                            for m in load_migrations()
                        ]
                    }
                )
                return 0
            store = Store(db)
            if ns.db_command == "bootstrap":
                boot = await ensure_bootstrap(store)
                _out(
                    {
                        "customer_id": boot.customer_id,
                        "agent_id": boot.agent_id,
                        "access_key": boot.new_access_key or None,
                    }
                )
                return 0
            if ns.db_command == "create-customer":
                return await _create_customer(store, ns.name, ns.email)
            problem = await inactive_customer(store, ns.customer_id)
            if problem:
                sys.stderr.write(
                    f"customer {ns.customer_id} is {problem}: no key minted"
                    " (`callbridge db create-customer --name NAME` creates one)\n"
                )
                return 2
            row, token = await create_access_key(store, ns.customer_id, ns.role, ns.name, ns.expire)
            _out(
                {
                    "id": row["id"],
                    "customer_id": ns.customer_id,
                    "role": ns.role,
                    "access_key": token,
                }
            )
            return 0
    finally:
        bridge.close()


async def _create_customer(store: Store, name: str, email: str) -> int:
    if await store.find("customers", name=name):
        sys.stderr.write(f"a customer named {name!r} exists already\n")
        return 2
    customer_id = str(uuid.uuid4())  # a customer row owns itself
    values = {"id": customer_id, "customer_id": customer_id, "name": name, "email": email}
    await store.insert("customers", {**values, "status": "active", "tm_disable": None})
    _out({"customer_id": customer_id, "name": name})
    return 0


def _out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
