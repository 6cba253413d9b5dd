"""The python runtime's compiler (OW_COMPILER): turns the extracted action into an executable the proxy starts.

Follows apache/openwhisk-runtime-python core/python3Action/bin/compile at 9a873ec. Called by the proxy as
`compile.py <main> <src dir> <bin dir>`:

1. sources: a plain-text action arrives as the file `exec`; it, or a zip's `__main__.py`, becomes `main__.py`, and
   launcher.py is copied beside it as `exec__.py` with its import rewritten to `from main__ import <main> as main`;
2. build: the source folder replaces the bin folder, and `bin/exec` is a shell script that runs exec__.py;
3. check: main__.py must exist and parse; a problem is written to stderr.

Whatever this program prints makes the proxy fail the /init with 502 (the Go proxy treats any compiler output as
an error), so a syntax error in the action is a build failure.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
IMPORT_LINE = "from main__ import main as main"


def sources(main: str, src: Path) -> None:
    if (src / "exec").exists():
        (src / "exec").rename(src / "__main__.py")
    if (src / "__main__.py").exists():
        (src / "__main__.py").rename(src / "main__.py")
    launcher = LAUNCHER.read_text().replace(IMPORT_LINE, f"from main__ import {main} as main", 1)
    (src / "exec__.py").write_text(launcher)


def build(src: Path, tgt: Path) -> Path:
    shutil.rmtree(tgt, ignore_errors=True)
    shutil.move(str(src), str(tgt))
    exe = tgt / "exec"
    # upstream's script, with this image's interpreter (the venv that holds TensorFlow) instead of /usr/local/bin
    exe.write_text(f"""#!/bin/bash
export PYTHONIOENCODING=UTF-8
if [[ "$__OW_EXECUTION_ENV" == "" || "$(cat $0.env)" == "$__OW_EXECUTION_ENV" ]]
then cd "$(dirname $0)"
     exec {sys.executable} exec__.py "$@"
else echo "Execution Environment Mismatch"
     echo "Expected: $(cat $0.env)"
     echo "Actual: $__OW_EXECUTION_ENV"
     exit 1
fi
""")
    exe.chmod(0o755)
    if os.environ.get("__OW_EXECUTION_ENV"):
        Path(f"{exe}.env").write_text(os.environ["__OW_EXECUTION_ENV"])
    return exe


def check(tgt: Path, module: str) -> None:
    path = tgt / f"{module}.py"
    if not path.is_file():
        sys.stderr.write(f"Zip file does not include {module}\n")
        return
    try:
        ast.parse(path.read_bytes().decode("utf-8"))
    except SyntaxError as exc:
        sys.stderr.write(f"{exc.msg} ({path.name}, line {exc.lineno})\n")


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stdout.write("usage: <main-function> <source-dir> <target-dir>\n")
        return 1
    src, tgt = Path(argv[2]).resolve(), Path(argv[3]).resolve()
    sources(argv[1], src)
    build(src, tgt)
    check(tgt, "main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
