"""Suite-wide helpers: servers on loopback are required in CI and optional elsewhere."""

from __future__ import annotations

import os

import pytest


def require_service(name: str, reason: str) -> None:
    """Skip with ``reason`` outside CI; fail in CI (CI=true), where every service must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")
