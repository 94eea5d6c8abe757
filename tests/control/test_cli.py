"""``callbridge db`` against a real SQLite file and the MariaDB on loopback."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import pytest
import trio

from control import cli
from control.bridge import AsyncioBridge
from control.db import DatabaseUrl, open_database
from control.db.migrate import drop_all, load_migrations

# every file in control/migrations/, in order: a new migration needs no edit here
ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in load_migrations()]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(argv)) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_migrate_status_bootstrap_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/cb.db"]
    status = _run([*db, "status"], capsys)
    assert status["migrations"] == [
        {"version": m.version, "name": m.name, "applied": False} for m in load_migrations()
    ]
    assert status["migrations"][:3] == [
        {"version": 1, "name": "init", "applied": False},
        {"version": 2, "name": "call_holder", "applied": False},
        {"version": 3, "name": "conference_audio", "applied": False},
    ]
    assert _run([*db, "migrate"], capsys)["applied"] == ALL_MIGRATIONS
    assert _run([*db, "migrate"], capsys)["applied"] == []
    first = _run([*db, "bootstrap"], capsys)
    assert str(first["access_key"]).startswith("ak_")
    again = _run([*db, "bootstrap"], capsys)
    assert again["customer_id"] == first["customer_id"] and again["access_key"] is None
    minted = _run(
        [
            *db,
            "create-accesskey",
            "--customer-id",
            str(first["customer_id"]),
            "--role",
            "agent_user",
        ],
        capsys,
    )
    assert minted["role"] == "agent_user" and str(minted["access_key"]).startswith("ak_")


def test_migrate_on_mariadb(mysql_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = DatabaseUrl.parse(mysql_url)
    prefix = f"c{uuid.uuid4().hex[:8]}_"
    args = ["--db", mysql_url, "--db-prefix", prefix]
    try:
        assert _run([*args, "migrate"], capsys)["applied"] == ALL_MIGRATIONS
        assert _run([*args, "migrate"], capsys)["applied"] == []
    finally:

        async def cleanup() -> None:
            bridge = AsyncioBridge()
            async with open_database(url, prefix, bridge) as db:
                await drop_all(db)
            bridge.close()

        trio.run(cleanup)


def test_bad_db_url_is_a_config_error() -> None:
    from media.config import ConfigError

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(ConfigError, match="--db"):
        cli.run(parser.parse_args(["--db", "postgres://x/y", "migrate"]))
