"""The numpy MiniLM forward pass: unit vectors whose similarities mean something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ai_pipeline.engines.minilm import HIDDEN, MAX_TOKENS, MiniLMEncoder, MiniLMError
from ai_pipeline.engines.models import ModelStore


@pytest.fixture(scope="module")
def encoder(models: ModelStore) -> MiniLMEncoder:
    return models.intent_router()._encoder


def test_embeddings_are_unit_vectors(encoder: MiniLMEncoder) -> None:
    v = encoder.embed("transfer me to sales")
    assert v.shape == (HIDDEN,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert np.array_equal(v, encoder.embed("transfer me to sales"))  # deterministic


def test_paraphrases_are_closer_than_unrelated(encoder: MiniLMEncoder) -> None:
    a, b, c = encoder.embed_many(
        ["I want to talk to the sales team", "connect me with sales", "what is the weather"]
    )
    assert a @ b > 0.5
    assert a @ b > a @ c + 0.3


def test_case_and_empty_input(encoder: MiniLMEncoder) -> None:
    # The vocabulary is uncased: case must not change the vector.
    assert np.allclose(encoder.embed("HELLO THERE"), encoder.embed("hello there"), atol=1e-6)
    assert encoder.embed("").shape == (HIDDEN,)
    assert encoder.embed_many([]).shape == (0, HIDDEN)


def test_long_input_is_truncated(encoder: MiniLMEncoder) -> None:
    text = "sales " * 1000
    assert len(encoder.token_ids(text)) == MAX_TOKENS
    assert encoder.embed(text).shape == (HIDDEN,)


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MiniLMError, match="no MiniLM"):
        MiniLMEncoder(tmp_path)


def test_wrong_weights_are_a_clear_error(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from ai_pipeline.engines.minilm import default_model_dir

    (tmp_path / "tokenizer.json").write_bytes((default_model_dir() / "tokenizer.json").read_bytes())
    save_file({"nothing": np.zeros(3, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(MiniLMError, match="lacks tensor"):
        MiniLMEncoder(tmp_path)
