"""evplug's commands as subprocesses on loopback, for tests that run the parts apart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from evplug.bus.broker import free_port

T = TypeVar("T")
EVPLUG = [sys.executable, "-m", "evplug.cli"]


@dataclass
class Process:
    """A running ``evplug`` command whose stderr goes to a file the test can read."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no line with {text!r}; it wrote:\n{self.output()}")

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass
class Processes:
    """Starts ``evplug`` commands in ``workdir`` with the given ``EVPLUG_*`` variables."""

    workdir: Path
    env: dict[str, str]
    running: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        """``evplug ARGS``; ``env`` adds ``EVPLUG_*`` variables for this process only."""
        log = self.workdir / f"{name}-{len(self.running)}.log"
        process = subprocess.Popen(
            [*EVPLUG, *args],
            cwd=self.workdir,
            env={**self.environ(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        started = Process(name, process, log)
        self.running.append(started)
        return started

    def environ(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVPLUG_")}
        return {**inherited, **self.env}

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*EVPLUG, *args],
            cwd=self.workdir,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.process.poll() is None:
                process.kill()


def ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def eventually(check: Callable[[], T], timeout_s: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (processes run on the real clock)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}; last: {last!r}")
