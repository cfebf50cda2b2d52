"""Start local processes for the distributed tests, and make sure they stop."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the tests use loopback addresses only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def join_or_fail(context: Any, timeout_s: float, what: str) -> None:
    """Join a ``torch.multiprocessing`` context; fail the test (and kill it) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not finish in {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
