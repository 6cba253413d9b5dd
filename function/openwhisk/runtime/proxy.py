"""The action container's server: a Python port of OpenWhisk's Go action-loop proxy (openwhisk-runtime-go
1.23@1.25.0, proxy version 1.17.1, `openwhisk/` package), as the python runtime image runs it (apache/
openwhisk-runtime-python at 9a873ec, core/python311Action/Dockerfile: OW_COMPILER, OW_WAIT_FOR_ACK=1,
OW_LOG_INIT_ERROR=1, OW_EXECUTION_ENV=openwhisk/action-python-v3.11).

Two routes, as initHandler.go and runHandler.go answer them (every error is JSON {"error": "..."}):

- POST /init {"value": {"code", "binary", "main", "env"}}: a second /init is **403** "Cannot initialize the action
  more than once."; no code is 403; bad JSON or bad base64 is 400. The code (a zip when `binary`, else the source
  text) goes into ./action/<n>/src, the compiler (compile.py) turns it into ./action/<n>/bin/exec, and the proxy
  starts it with fd 3 as a pipe and waits for {"ok": true} on it: the action's module-level code (the model load)
  runs now. A compiler that prints anything, or a process that exits before its ack, is a build failure: **502**
  (with OW_LOG_INIT_ERROR the details go to stderr, followed by the sentinel).
- POST /run {"value": params, ...}: the body, newlines removed, is one line on the action's stdin; the answer is one
  line on fd 3. No action: 500 "no action defined yet"; a process that has exited: 500 "command exited"; one that
  exits during the call: **400** "command exited"; an answer that is neither a JSON object nor an array: **502**
  "The action did not return a dictionary or array."; otherwise 200 with the answer as is.
- After every /run the proxy writes the end-of-activation sentinel XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX on its
  stdout and its stderr (the invoker reads an activation's logs up to it).

Like the Go proxy it has no lock and no timeout: the invoker sends one activation at a time and enforces the time
limit by destroying the container. Any other path answers 200 with an empty body (the Go ServeHTTP's switch).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
import queue
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROXY_VERSION = "1.17.1"
OUTPUT_GUARD = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
HERE = Path(__file__).resolve().parent


class ActionError(Exception):
    """An /init or /run that fails: `status` and `message` are the proxy's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def write_guard() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(OUTPUT_GUARD)
        stream.flush()


class Executor:
    """The action's process: the JSON lines on its stdin, the answers on its fd 3 (executor.go)."""

    def __init__(self, command: Path, env: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        # the child finds the pipe at fd 3, as Go's cmd.ExtraFiles puts it there
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec 3>&{write_fd} {write_fd}>&-; exec "$0"', str(command)],
            stdin=subprocess.PIPE, env=env, pass_fds=(write_fd,), cwd=str(command.parent))
        os.close(write_fd)
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, args=(read_fd,), daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as answers:
            for line in answers:
                self.lines.put(line)
        self.lines.put(None)  # EOF: the process (the only holder of the write end) has exited

    def exited(self) -> bool:
        return self.process.poll() is not None

    def start(self, wait_for_ack: bool) -> None:
        if not wait_for_ack:  # upstream waits 5 ms to see whether the command exits at once
            try:
                self.process.wait(0.005)
            except subprocess.TimeoutExpired:
                return
            raise ActionError(502, "command exited")
        line = self.lines.get()
        if line is None:
            raise ActionError(502, "Command exited abruptly during initialization.")
        try:
            ack = json.loads(line)
        except ValueError as exc:
            raise ActionError(502, str(exc)) from None
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise ActionError(502, "The action did not initialize properly.")

    def interact(self, line: bytes) -> bytes:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # the process is gone: the answer below is EOF
        answer = self.lines.get()
        write_guard()
        if not answer:
            raise ActionError(400, "command exited")
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class ActionProxy:
    def __init__(self, base_dir: Path, compiler: str | None) -> None:
        self.base_dir = base_dir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.compiler = compiler
        self.current_dir = max([int(p.name) for p in base_dir.iterdir() if p.name.isdigit()], default=0)
        self.initialized = False
        self.executor: Executor | None = None
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ /init
    def init(self, body: bytes) -> None:
        if self.initialized:
            raise ActionError(403, "Cannot initialize the action more than once.")
        try:
            value = (json.loads(body) or {}).get("value") or {}
        except (ValueError, AttributeError) as exc:
            raise ActionError(400, f"Error unmarshaling request: {exc}") from None
        code = value.get("code") or ""
        if not code:
            raise ActionError(403, "Missing main/no code to execute.")
        self.set_env(value.get("env") or {})
        main = value.get("main") or "main"
        if value.get("binary"):
            try:
                buf = base64.b64decode(code, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ActionError(400, f"cannot decode the request: {exc}") from None
        else:
            buf = code.encode()
        log_init_error = bool(os.environ.get("OW_LOG_INIT_ERROR"))
        try:
            executable = self.extract_and_compile(buf, main)
        except ActionError as exc:
            self._init_failed(exc, "The action failed to generate or locate a binary. See logs for details.",
                              log_init_error)
        try:
            self.start_action(executable)
        except ActionError as exc:
            exc = ActionError(502, f"cannot start action: {exc}") if not log_init_error else exc
            self._init_failed(exc, "Cannot start action. Check logs for details.", log_init_error)
        self.initialized = True

    @staticmethod
    def _init_failed(exc: ActionError, logged_message: str, log_init_error: bool) -> None:
        if not log_init_error:
            raise ActionError(502, str(exc))
        sys.stderr.write(f"{exc}\n")
        write_guard()
        raise ActionError(502, logged_message)

    def set_env(self, env: dict) -> None:
        self.env["__OW_PROXY_VERSION"] = PROXY_VERSION
        if os.environ.get("OW_EXECUTION_ENV"):
            self.env["__OW_EXECUTION_ENV"] = os.environ["OW_EXECUTION_ENV"]
        if os.environ.get("OW_WAIT_FOR_ACK"):
            self.env["__OW_WAIT_FOR_ACK"] = os.environ["OW_WAIT_FOR_ACK"]
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("__OW_")})
        for key, val in env.items():
            self.env[key] = val if isinstance(val, str) else json.dumps(val)

    def extract_and_compile(self, buf: bytes, main: str) -> Path:
        if not buf:
            raise ActionError(502, "no file")
        self.current_dir += 1
        action_dir = self.base_dir / str(self.current_dir)
        src, binary = action_dir / "src", action_dir / "bin"
        src.mkdir(parents=True, exist_ok=True)
        try:
            if buf[:4] == b"PK\x03\x04":
                with zipfile.ZipFile(io.BytesIO(buf)) as archive:
                    archive.extractall(src)  # noqa: S202 - the action's own code, sent by the invoker
            elif buf[:2] == b"\x1f\x8b":
                with tarfile.open(fileobj=io.BytesIO(buf), mode="r:gz") as archive:
                    archive.extractall(src, filter="data")
            else:
                (src / "exec").write_bytes(buf)
                (src / "exec").chmod(0o755)
        except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
            raise ActionError(502, str(exc)) from None
        exec_file = src / "exec"
        compiled = exec_file.exists() and exec_file.read_bytes()[:4] == b"\x7fELF"
        if not self.compiler or compiled:  # nothing to compile: the folder is the binary folder
            src.rename(binary)
            return binary / "exec"
        binary.mkdir(exist_ok=True)
        done = subprocess.run([sys.executable, self.compiler, main, str(src), str(binary)],
                              env={"PATH": os.environ.get("PATH", ""), **self.env}, capture_output=True)
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        if output:  # compiler.go: any output is an error
            raise ActionError(502, output)
        if done.returncode != 0:
            raise ActionError(502, f"exit status {done.returncode}")
        if not (binary / "exec").exists():
            raise ActionError(502, "cannot compile")
        return binary / "exec"

    def start_action(self, executable: Path) -> None:
        executable.chmod(0o755)
        executor = Executor(executable, dict(self.env))
        try:
            executor.start(bool(os.environ.get("OW_WAIT_FOR_ACK")))
        except ActionError:
            executor.stop()
            raise
        if self.executor is not None:
            self.executor.stop()
        self.executor = executor

    # ------------------------------------------------------------------------------------------- /run
    def run(self, body: bytes) -> bytes:
        if self.executor is None:
            raise ActionError(500, "no action defined yet")
        if self.executor.exited():
            raise ActionError(500, "command exited")
        try:
            answer = self.executor.interact(body.replace(b"\n", b""))
        except ActionError:
            self.executor = None
            raise
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict | list):
            raise ActionError(502, "The action did not return a dictionary or array.")
        return answer


def handler_for(proxy: ActionProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "openwhisk-actionloop"
        sys_version = ""

        def log_message(self, format: str, *args) -> None:
            pass  # the Go proxy logs no request lines

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Go's default for TCP

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self._headers_buffer.append(b"\r\n" + body)  # head and body in one write
            self.flush_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            try:
                if path == "/init":
                    proxy.init(body)
                    self._send(200, b'{"ok":true}\n')
                elif path == "/run":
                    self._send(200, proxy.run(body))
                else:
                    self._send(200, b"")
            except ActionError as exc:
                self._send(exc.status, json.dumps({"error": str(exc)}).encode() + b"\n")

        do_GET = do_POST  # Go's handler serves every method alike

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("OW_PROXY_PORT", "8080")),
                        help="listen port (upstream: always 8080)")
    parser.add_argument("--bind", default=os.environ.get("OW_PROXY_BIND", "0.0.0.0"), help="listen address")
    parser.add_argument("--action-dir", type=Path, default=Path(os.environ.get("OW_ACTION_DIR", "./action")),
                        help="where each /init's code is extracted (upstream: ./action)")
    args = parser.parse_args(argv)
    compiler = os.environ.get("OW_COMPILER", str(HERE / "compile.py"))
    proxy = ActionProxy(args.action_dir, compiler or None)
    server = ThreadingHTTPServer((args.bind, args.port), handler_for(proxy))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if proxy.executor is not None:
            proxy.executor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
