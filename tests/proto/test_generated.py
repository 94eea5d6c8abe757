"""The checked-in generated code is exactly what protoc makes of frames.proto today."""

from __future__ import annotations

from pathlib import Path

from proto.regen import GENERATED, PROTO_DIR, generate


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (PROTO_DIR / name).read_bytes(), (
            f"{name} is stale: run `python -m proto.regen`"
        )
