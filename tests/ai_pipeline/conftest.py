"""Shared fixtures for the agent tests: the process-wide models are loaded once per session."""

from __future__ import annotations

import logging
import sys

import pytest
from loguru import logger

from ai_pipeline.engines.models import ModelStore


@pytest.fixture(scope="session")
def models() -> ModelStore:
    store = ModelStore()
    store.preload_offline()  # keep model loading out of every test's timeouts
    return store


@pytest.fixture(autouse=True, scope="session")
def _quiet_pipecat() -> None:
    # pipecat logs every frame hop at DEBUG through loguru; keep warnings so failures explain.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logging.getLogger("ai_pipeline").setLevel(logging.INFO)
