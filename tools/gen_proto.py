"""Regenerate the Python modules of the wire contract from src/evplug/contracts/*.proto.

Usage: python tools/gen_proto.py [OUT_DIR]   (default: src, i.e. in place)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every contract file; return the .proto files it compiled."""
    protos = sorted((SRC / "evplug" / "contracts").glob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{SRC}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return protos


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
