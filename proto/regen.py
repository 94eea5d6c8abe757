"""Regenerate ``frames_pb2.py`` and ``frames_pb2.pyi`` from ``frames.proto``.

The generated code depends on the protoc that grpcio-tools bundles, so its version is pinned in
pyproject's ``test`` extra; ``tests/proto/test_generated.py`` regenerates into a temporary folder
and compares, so a hand edit or a stale file fails the suite.

protoc runs from the repository root so the file registers as ``proto/frames.proto``: pipecat's
module already holds the name ``frames.proto`` in protobuf's default descriptor pool.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent
GENERATED = ("frames_pb2.py", "frames_pb2.pyi")


def generate(out_dir: Path) -> None:
    """Run protoc on frames.proto, writing the Python module and its stub into ``out_dir``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"--proto_path={ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            str(PROTO_DIR / "frames.proto"),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on proto/frames.proto")
        for name in GENERATED:
            shutil.copyfile(Path(tmp) / "proto" / name, out_dir / name)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR)
