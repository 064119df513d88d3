"""Real Daphne processes serving the dashboard, for the tests and the benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
DAPHNE = str(Path(sys.executable).parent / "daphne")


def manage(env: dict[str, str], *args: str) -> None:
    """`manage.py args` with env (migrate, ensure_login), failing loudly."""
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)


def spawn(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Daphne serving dashboard.asgi with env on a free port, its output in log; not waited
    for, so that several start at once (each takes seconds)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DAPHNE, "-v", "0", "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, port


def wait_for(process: subprocess.Popen[bytes], port: int, log: Path,
             timeout: float = 60) -> str:
    """The base URL once the port answers; the log in the error when Daphne exits or not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"daphne did not answer on port {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
