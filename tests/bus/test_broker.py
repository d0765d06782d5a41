"""`evplug broker`: a local nats-server as a developer runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from evplug.bus.base import BusError
from evplug.bus.broker import Broker, free_port
from evplug.bus.nats import connect_nats
from tests.bus.inbox import Inbox
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def broker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "evplug.cli", "broker", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("EVPLUG_")}


async def test_broker_runs_until_sigterm_and_the_bus_works_through_it(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *broker_command("--port", str(port), "--data-dir", str(tmp_path)),
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert process.stderr is not None
        first = (await asyncio.wait_for(process.stderr.readline(), 15)).decode()
        assert first.startswith(f"broker ready at nats://127.0.0.1:{port} "), first
        creds = tmp_path / "nats" / "auth" / "admin.creds"  # made by the broker's first start
        bus = await connect_nats(f"nats://127.0.0.1:{port}", credentials=creds)
        inbox = Inbox()
        await bus.subscribe("commands.site-1", "relay", inbox)
        await bus.publish("commands.site-1", b"on")
        await wait_for(lambda: inbox.data == [b"on"], timeout_s=5)
        await bus.close()
        assert (tmp_path / "nats" / "jetstream").is_dir()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    with pytest.raises(BusError, match="unreachable"):  # the server went with it
        await connect_nats(f"nats://127.0.0.1:{port}")


def test_a_port_in_use_is_one_line_naming_the_fix(nats_broker: Broker, tmp_path: Path) -> None:
    done = subprocess.run(
        broker_command("--port", str(nats_broker.port), "--data-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=clean_env(),
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"evplug broker: port {nats_broker.port} on 127.0.0.1 is already in use (another"
        " broker?): stop it or pass --port with another number\n"
    )
