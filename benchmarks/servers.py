"""Start the servers under test on 127.0.0.1, each on a free port, and stop them by PID.

Every server runs in a session of its own, so stopping it (SIGTERM, then SIGKILL) reaches its
children too (node and the JVM fork nothing, but npm wrappers would), and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tools

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "sk-bench-0123456789"
#: A typical submission: gpt-image-2, a 1024x1024 PNG.
SUBMIT_BODY: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a blue glass sphere on a wooden table, soft morning light",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "png",
}
CONTRACT = ROOT / "contracts" / "image-tasks.openapi.yaml"
FALLBACK_CONTRACT = Path(__file__).resolve().parent / "fallback-contract.openapi.yaml"
ID_PATTERN = "task_[0-9a-f]{32}"

_running: list[Server] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def contract_path() -> Path:
    """Our OpenAPI contract, or the benchmarks' minimal one while it does not exist yet."""
    return CONTRACT if CONTRACT.exists() else FALLBACK_CONTRACT


@dataclass
class Server:
    name: str
    label: str
    cmd: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    #: The path template of a downloadable result ("{id}" replaced, "{result}" by the path of
    #: the task's first result), or "" if it has none.
    download: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process (without waiting for it to listen)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")} | self.env
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _running.append(self)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server accepts connections; RuntimeError if it exits or times out."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited at start-up; see {self.log}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not listen on {self.port} in {timeout:.0f} s")

    def rss_mib(self) -> float | None:
        """Resident memory of the server process (Linux), MiB."""
        if self.proc is None:
            return None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server's processes have used so far
        (Linux): every process of its session (``start_new_session``: Prism's node runs under
        npx, a child of the process started here)."""
        assert self.proc is not None, "launch() first"
        return group_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self in _running:
            _running.remove(self)

    # -- HTTP helpers (the benchmark's own set-up requests) -------------------------------
    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True
    ) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {API_KEY}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/PID/stat (fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process of process group ``pgid``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5, the process group
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stop_all() -> None:
    """Stop every server still running (in reverse start order)."""
    for server in list(reversed(_running)):
        server.stop()


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def emulator(workdir: Path) -> Server:
    """Ours, the recommended way: ``python -m emulator serve`` (uvicorn, uvloop + httptools,
    one worker), real clock with time_scale 0 so every task is done at its first poll, and
    the log level at warning so uvicorn writes no access line per request."""
    port = free_port()
    cmd = [_python(), "-m", "emulator", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--seed", "1", "--time-scale", "0", "--log-level", "warning"]
    return Server(
        "emulator",
        "emulator",
        cmd,
        port,
        workdir / "emulator.log",
        download="{result}",
    )


def ceiling(workdir: Path, result_file: Path) -> Server:
    port = free_port()
    cmd = [_python(), "-m", "uvicorn", "benchmarks.ceiling_app:app", "--host", HOST]
    cmd += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    cmd += ["--log-level", "warning"]
    return Server(
        "ceiling",
        "Starlette ceiling",
        cmd,
        port,
        workdir / "ceiling.log",
        env={"CEILING_RESULT_FILE": str(result_file)},
        download="/_emulator/results/{id}/0.png",
    )


def prism(workdir: Path) -> Server:
    """Prism mocking our contract from its examples (static mode, request validation on),
    logging warnings only (its default per-request info log would slow it down)."""
    port = free_port()
    cmd = [*tools.prism(), "mock", str(contract_path()), "-h", HOST, "-p", str(port)]
    cmd += ["--verboseLevel", "warn"]
    return Server("prism", f"Prism {tools.prism_version()}", cmd, port, workdir / "prism.log")


def wiremock(workdir: Path, task: dict[str, Any], result_png: bytes) -> Server:
    """WireMock with stubs of the two routes (and the result download), answering the bodies
    ours answers; request journal on (WireMock's default, stated here so that nobody turns it
    off: ours keeps one), kept to the newest 1000 entries like ours."""
    root = workdir / "wiremock"
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    (root / "__files").mkdir(parents=True, exist_ok=True)
    auth = {"Authorization": {"matches": "Bearer .+"}}
    queued = dict(task, status="queued", progress="0%", result_url=None)
    queued["metadata"] = {"task_type": "text2image", "result_count": 0}
    stubs = [
        {
            "request": {"method": "POST", "urlPath": "/v1/images/tasks", "headers": auth},
            "response": {
                "status": 200,
                "headers": {"Content-Type": "application/json"},
                "jsonBody": {"code": "success", "message": "", "data": queued},
            },
        },
        {
            "request": {
                "method": "GET",
                "urlPathPattern": f"/v1/images/tasks/{ID_PATTERN}",
                "headers": auth,
            },
            "response": {
                "status": 200,
                "headers": {"Content-Type": "application/json"},
                "jsonBody": {"code": "success", "message": "", "data": task},
            },
        },
        {
            "request": {
                "method": "GET",
                "urlPathPattern": f"/_emulator/results/{ID_PATTERN}/0.png",
            },
            "response": {
                "status": 200,
                "headers": {"Content-Type": "image/png"},
                "base64Body": base64.b64encode(result_png).decode(),
            },
        },
    ]
    (root / "mappings" / "stubs.json").write_text(json.dumps({"mappings": stubs}))
    port = free_port()
    jar = tools.wiremock_jar()
    cmd = [tools.java(), "-jar", str(jar), "--port", str(port)]
    cmd += ["--bind-address", HOST, "--root-dir", str(root), "--disable-banner"]
    cmd += ["--max-request-journal-entries", "1000"]
    version = jar.stem.removeprefix("wiremock-standalone-")
    return Server(
        "wiremock",
        f"WireMock {version} (journal on)",
        cmd,
        port,
        workdir / "wiremock.log",
        download="/_emulator/results/{id}/0.png",
    )
