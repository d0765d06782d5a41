"""Each part of evplug as a process of its own: the mothership, the web, a site's relay manager.

Every process serves ``/healthz`` and ``/metrics`` over HTTP, writes one line to stderr when it
is ready, and stops on SIGTERM (or Ctrl-C) in order: the HTTP server, then the part (its
subscriptions stopped, in-flight handlers finished, buffers flushed), then the bus, so nothing
acked is lost. ``assembly`` builds the parts; this module runs them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from evplug import assembly, metrics
from evplug.assembly import StartupError
from evplug.bus.base import Bus, BusRefused
from evplug.clock import SystemClock
from evplug.devices.base import DeviceError
from evplug.relay import status_page
from evplug.settings import Settings


@dataclass
class Part:
    """One running part: what to start and stop, and the HTTP app it answers on."""

    name: str
    app: FastAPI
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    summary: str  # the end of the ready line: what it is connected to
    # Done, with why, when the broker shuts the part out for good: the part stops and fails.
    gone: asyncio.Future[str] | None = None
    started: bool = field(default=False, init=False)


def add_health_routes(app: FastAPI, part: Part) -> None:
    """``/healthz`` (200 once started, 503 before and while stopping) and ``/metrics``."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok = part.started
        return JSONResponse({"part": part.name, "ok": ok}, status_code=200 if ok else 503)

    if not any(getattr(route, "path", None) == "/metrics" for route in app.routes):

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def run_part(part: Part, host: str, port: int) -> None:
    """Start the part, serve HTTP until SIGTERM or SIGINT, then stop everything in order."""
    assembly.check_port_free(host, port)
    server = uvicorn.Server(uvicorn.Config(part.app, host=host, port=port, log_level="warning"))

    def exit_on_signal(signum: int, frame: FrameType | None) -> None:
        # Also the handler uvicorn re-raises to once it has stopped: stopping twice is a no-op.
        server.should_exit = True

    previous = {s: signal.signal(s, exit_on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    add_health_routes(part.app, part)
    try:
        try:
            await part.start()
        except BaseException:
            await part.stop()
            raise
        part.started = True
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        if server.started:
            print(
                f"evplug {part.name} ready: http://{host}:{port}/healthz ({part.summary};"
                " Ctrl-C or SIGTERM to stop)",
                file=sys.stderr,
                flush=True,
            )
        try:
            await _serve_until_gone(server, serving, part.gone)
        finally:
            part.started = False
            await part.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _serve_until_gone(
    server: uvicorn.Server, serving: asyncio.Task[None], gone: asyncio.Future[str] | None
) -> None:
    """Serve until told to stop; a part the broker shut out stops and raises ``BusRefused``."""
    if gone is None:
        await serving
        return
    await asyncio.wait({serving, gone}, return_when=asyncio.FIRST_COMPLETED)
    if gone.done() and not serving.done():
        server.should_exit = True
        await serving
        raise BusRefused(gone.result())
    await serving


# -- the parts -----------------------------------------------------------------------------


async def _closing(bus: Bus, store: assembly.Store | None = None) -> None:
    if store is not None:
        await store.repo.engine.dispose()
    await bus.close()


async def mothership_part(settings: Settings, site_files: list[Path]) -> Part:
    """The mothership on the settings' bus and database; the sites of ``site_files`` registered."""
    sites = [assembly.load_site(path) for path in site_files]
    clock = SystemClock()
    bus = await assembly.make_bus(settings, clock)
    try:
        store = await assembly.make_store(settings)
    except BaseException:
        await bus.close()
        raise
    try:
        for site in sites:
            await assembly.register_site(settings, store, site)
    except BaseException:
        await _closing(bus, store)
        raise
    mothership = assembly.make_mothership(settings, bus, store, clock)

    async def stop() -> None:
        try:
            await mothership.stop()
        finally:  # a broker down at the stop must not leave the database open
            await _closing(bus, store)

    registered = ", ".join(site.site_id for site in sites) or "none given"
    return Part(
        "mothership",
        FastAPI(title="evplug mothership", docs_url=None, redoc_url=None),
        mothership.start,
        stop,
        f"bus {settings.bus_url}, sites registered: {registered}",
        assembly.bus_gone(bus),
    )


async def web_part(settings: Settings) -> Part:
    """The web app on the settings' bus and database."""
    bus = await assembly.make_bus(settings, SystemClock(), declare_streams=False)
    try:
        store = await assembly.make_store(settings)
    except BaseException:
        await bus.close()
        raise
    app = assembly.make_web_app(settings, bus, store)

    async def start() -> None:
        pass  # the app's lifespan starts its live view

    async def stop() -> None:
        await _closing(bus, store)

    summary = f"bus {settings.bus_url}"
    return Part("web", app, start, stop, summary, assembly.bus_gone(bus))


async def relay_part(settings: Settings, site_file: Path) -> Part:
    """A site's relay manager alone, with its status page, on the site's bus (its file's
    ``[bus]``, unless the settings name one)."""
    site = assembly.load_site(site_file)
    settings = assembly.site_bus_settings(settings, site)
    clock = SystemClock()
    outbox = assembly.make_outbox(settings, site)
    try:
        bus = await assembly.make_bus(settings, clock, declare_streams=False)
    except BaseException:
        outbox.close()
        raise
    relay = assembly.make_relay(settings, site, bus, clock, assembly.site_devices(site), outbox)
    app = status_page.create_app(relay, settings.effective_public_url())

    async def start() -> None:
        try:
            await relay.connect()
        except DeviceError as exc:
            raise StartupError(
                f"{exc}: is the relay on, and its address in {site_file} right?"
            ) from None
        await relay.start()

    async def stop() -> None:
        try:
            await relay.stop()
        finally:
            await bus.close()

    summary = f"site {site.site_id}, {len(site.devices)} relays, bus {settings.bus_url}"
    return Part("relay", app, start, stop, summary, assembly.bus_gone(bus))
