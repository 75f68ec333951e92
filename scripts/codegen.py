"""Build the Python code for the public API from ``protos/shopkeeper/v1/*.proto``.

The generated modules are committed under ``core/_proto/v1`` (importable as
``shopkeeper._proto.v1``) together with a copy of the ``.proto`` files, so an installed
package carries its own API definition. Regenerate after editing a ``.proto``::

    python scripts/codegen.py

A developer tool that works only from a checkout (it writes into ``core/``), so it lives in
``scripts/`` and not in the installed package.

``tests/hub/test_codegen.py`` regenerates into a temporary directory and fails when the
committed code differs. Needs ``grpcio-tools`` (the ``test`` extra).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
PROTO_DIR = PROTO_ROOT / "shopkeeper" / "v1"
OUT_DIR = REPO / "core" / "_proto" / "v1"

_IMPORT = re.compile(r"^from shopkeeper\.v1 import ", re.M)
_INIT = '"""Generated from protos/shopkeeper/v1 by ``python scripts/codegen.py``; do not edit."""\n'


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generate ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` into ``out_dir``; copy the protos."""
    import importlib.resources

    from grpc_tools import protoc

    protos = sorted(proto_dir.glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files in {proto_dir}")
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    root = proto_dir.parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}"] + [str(p.relative_to(root)) for p in protos]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        gen = Path(tmp) / "shopkeeper" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for f in sorted(gen.iterdir()):
            text = _IMPORT.sub("from shopkeeper._proto.v1 import ", f.read_text())
            (out_dir / f.name).write_text(text)
            written.append(out_dir / f.name)
    for p in protos:
        shutil.copyfile(p, out_dir / p.name)
        written.append(out_dir / p.name)
    (out_dir / "__init__.py").write_text(_INIT)
    written.append(out_dir / "__init__.py")
    parent = out_dir.parent / "__init__.py"
    if not parent.exists():  # the parent package is hand-written (it documents `values`): only a fresh tree gets one
        parent.write_text(_INIT)
        written.append(parent)
    return written


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    for p in generate(out):
        print(p)


if __name__ == "__main__":
    main()
