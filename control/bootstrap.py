"""First run: a default customer, its default agent, and one admin access key.

Zero-config SQLite must work out of the box, but a key is a secret: it is minted only when the
customer has no key at all, printed once (the database keeps only its hash), and can be re-minted
any time with ``callbridge db create-accesskey``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from control.auth import Role, new_access_key
from control.store import Store

DEFAULT_CUSTOMER_NAME = "default"
DEFAULT_AGENT_DETAIL = {
    "prompt": "You are a helpful phone assistant.",
    "greeting": "Hello, how can I help you?",
    "tools": ["end_call", "transfer_call", "send_dtmf"],
    "engines": {"stt": "whisper-tiny-en", "llm": "intent-router", "tts": "piper"},
    "language": "en",
    # where the offline agent's intents send a caller; a SIP leg transfers with REFER to these
    "transfer_targets": {
        "sales": "sip:sales@127.0.0.1",
        "billing": "sip:billing@127.0.0.1",
        "support": "sip:support@127.0.0.1",
    },
}


@dataclass(frozen=True, slots=True)
class Bootstrap:
    customer_id: str
    agent_id: str
    new_access_key: str  # empty when keys already existed


async def create_access_key(
    store: Store, customer_id: str, role: Role, name: str, tm_expire: str | None = None
) -> tuple[dict[str, object], str]:
    token, digest, prefix = new_access_key()
    row = await store.insert(
        "accesskeys",
        {
            "customer_id": customer_id,
            "name": name,
            "role": role,
            "token_hash": digest,
            "token_prefix": prefix,
            "tm_expire": tm_expire,
        },
    )
    return row, token


async def ensure_bootstrap(store: Store) -> Bootstrap:
    customers = await store.find("customers", name=DEFAULT_CUSTOMER_NAME)
    if customers:
        customer_id = customers[0]["id"]
    else:
        customer_id = str(uuid.uuid4())  # a customer row owns itself
        await store.insert(
            "customers",
            {"id": customer_id, "customer_id": customer_id, "name": DEFAULT_CUSTOMER_NAME},
        )
    agents = await store.find("agents", customer_id=customer_id, is_default=1)
    if agents:
        agent_id = agents[0]["id"]
    else:
        agent = await store.insert(
            "agents",
            {
                "customer_id": customer_id,
                "name": "default",
                "is_default": 1,
                "detail": DEFAULT_AGENT_DETAIL,
            },
        )
        agent_id = agent["id"]
    token = ""
    if not await store.find("accesskeys", customer_id=customer_id):
        _, token = await create_access_key(store, customer_id, "customer_admin", "bootstrap")
    return Bootstrap(customer_id, agent_id, token)
