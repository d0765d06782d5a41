"""The relay manager's local page: each plug with its latest reading and a QR code to its page.

A technician on site opens it on the LAN to see that each relay answers; the QR codes are the
ones printed on the sockets, so a driver's scan lands on the plug's page in the web app.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

import segno
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from evplug.core.actual import ActualState
from evplug.devices.base import Driver
from evplug.relay.manager import RelayManager


def plug_url(base_url: str, plug_id: str) -> str:
    return f"{base_url.rstrip('/')}/plug/{quote(plug_id, safe='')}"


def qr_svg(url: str) -> str:
    return segno.make(url, error="m").svg_inline(scale=3, title=url)


def render(relay: RelayManager, base_url: str) -> str:
    rows = []
    for plug_id, channel in sorted(relay.channels.items()):
        reading = relay.latest.get(plug_id)
        device = channel.info.hardware_id
        error = relay.health.last_error(device)
        if error is not None:
            # The technician's question at the socket: does the relay answer, and if not, why.
            state = f"not answering ({relay.health.failures(device)} polls in a row)"
            figures = f"{error}: is it powered, and its address in the site config right?"
        elif reading is None:
            state, figures = "no reading yet", ""
        else:
            state = ActualState(reading.actual_state).name  # the manager writes only members
            energy = (
                f"{reading.energy_wh:.1f} Wh" if reading.HasField("energy_wh") else "no counter"
            )
            figures = (
                f"{reading.active_power_w:.0f} W · {reading.voltage_v:.1f} V ·"
                f" {reading.current_a:.2f} A · {energy}"
            )
        url = plug_url(base_url, plug_id)
        rows.append(
            f"<tr><td>{qr_svg(url)}</td><td><b>{escape(plug_id)}</b><br>"
            f"{escape(channel.info.model)} at {escape(channel.info.address)}, circuit"
            f" {escape(channel.fuze_id)}<br>{escape(state)} {escape(figures)}<br>"
            f"{escape(_timer(relay, channel.driver))}<br>"
            f'<a href="{escape(url)}">{escape(url)}</a></td></tr>'
        )
    dropped = ""
    if relay.outbox.dropped:
        dropped = f"; {relay.outbox.dropped} dropped unsent (full): is the uplink down?"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>evplug relay — {escape(relay.site_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}}td{{padding:.4rem;vertical-align:top}}</style>
</head><body><h1>Site {escape(relay.site_id)}</h1>
<p>{len(relay.channels)} plugs, {relay.polls} polls so far.</p>
<p>Outbox: {len(relay.outbox)} chunks waiting for the broker{dropped}.</p>
<p>{escape(_supervision(relay))}</p>{_stops(relay)}
<table>{"".join(rows)}</table></body></html>"""


def _timer(relay: RelayManager, driver: Driver) -> str:
    if relay.edge.has_timer(driver):
        timer_s = relay.edge.config.dead_man_s
        return f"auto-off timer: off by itself {timer_s:g} s after the last renewal"
    # The technician's to know: this socket stays on if the relay manager dies mid-session.
    return "NO auto-off timer: stays on if this relay manager stops during a session"


def _supervision(relay: RelayManager) -> str:
    silent_s = relay.edge.silent_s
    if relay.edge.on_own:
        return (
            f"Mothership: not heard from for {silent_s:.0f} s: on its own, refusing to switch"
            f" sockets on ({relay.edge.refused} refused); is the uplink down?"
        )
    return f"Mothership: heard from {silent_s:.0f} s ago."


def _stops(relay: RelayManager) -> str:
    if not relay.edge.stops:
        return ""
    items = "".join(f"<li>{escape(s.plug_id)}: {escape(s.detail)}</li>" for s in relay.edge.stops)
    return f"<p>Switched off by this relay manager:</p><ul>{items}</ul>"


def create_app(relay: RelayManager, base_url: str) -> FastAPI:
    app = FastAPI(title=f"evplug relay {relay.site_id}", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def status() -> str:
        return render(relay, base_url)

    return app
