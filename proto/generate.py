"""Generate Python gRPC code from proto/ into llmops.contracts.rpc (``make proto``).

protoc writes absolute imports that follow the proto folder layout (``from serving.v1 import ...``);
they are rewritten to ``from llmops.contracts.rpc.serving.v1 import ...`` so the generated code lives
inside the contracts package. ``--check`` regenerates into a temporary folder and fails if the
committed code differs (CI runs it).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto" / "llmops"
OUT = ROOT / "libs" / "contracts" / "llmops" / "contracts" / "rpc"
PACKAGE = "llmops.contracts.rpc"


def generate(out: Path) -> None:
    protos = sorted(PROTO_ROOT.glob("*/v1/*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    services = sorted({p.relative_to(PROTO_ROOT).parts[0] for p in protos})
    pattern = re.compile(rf"^from ({'|'.join(services)})\.v1 import", re.M)
    for path in out.rglob("*.py*"):
        text = pattern.sub(rf"from {PACKAGE}.\1.v1 import", path.read_text())
        path.write_text(text)
    (out / "__init__.py").write_text('"""Generated from proto/ by `make proto`; do not edit."""\n')
    for folder in {p.parent for p in out.rglob("*_pb2.py")} | {
        p.parent.parent for p in out.rglob("*_pb2.py")
    }:
        (folder / "__init__.py").touch()


def _same(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same(a / d, b / d) for d in cmp.common_dirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    if parser.parse_args().check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "rpc"
            generate(fresh)
            if not OUT.exists() or not _same(fresh, OUT):
                print("generated gRPC code is stale: run `make proto` and commit the result", file=sys.stderr)
                raise SystemExit(1)
        print("generated gRPC code is up to date")
        return
    generate(OUT)
    print(f"generated {sum(1 for _ in OUT.rglob('*_pb2.py'))} proto modules into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
