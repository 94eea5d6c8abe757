"""The shared models run on the threads they are given, and none spins between runs.

An agent process serves many calls at once: an OpenBLAS or onnxruntime pool sized to the cores
splits one utterance across them and then spins waiting for the next, which doubled Whisper's
CPU per utterance here (``docs/measurements.md#model-threads``).
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

from ai_pipeline.engines.models import ModelSettings, ModelStore


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_a_store_holds_numpy_to_its_blas_budget() -> None:
    ModelStore(ModelSettings(blas_threads=2))
    # the budget is the store's, not a constant (OpenBLAS has at most a thread per core)
    assert _blas_threads() == {min(2, os.cpu_count() or 1)}
    ModelStore()
    assert _blas_threads() == {1}


def test_the_onnx_sessions_take_their_thread_budget_and_do_not_spin() -> None:
    store = ModelStore(ModelSettings(piper_threads=3))
    for session, threads in ((store.piper_voice().session, 3), (store.silero_session(), 1)):
        opts = session.get_session_options()
        assert opts.intra_op_num_threads == threads
        assert opts.inter_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
