"""Receipts for a session and for a top-up: the energy, the price applied and the amount, as a
printable HTML page and as a PDF (fpdf2)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from fpdf import FPDF

from evplug.store.records import EntryRecord, SessionRecord


@dataclass(frozen=True, slots=True)
class Receipt:
    title: str
    number: str
    lines: tuple[tuple[str, str], ...]
    amount_cents: int
    currency: str

    @property
    def amount(self) -> str:
        return money(self.amount_cents, self.currency)


def money(cents: int, currency: str) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d} {currency}"


def _when(ms: int | None) -> str:
    if ms is None:
        return "under way"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def session_receipt(session: SessionRecord, currency: str) -> Receipt:
    cost = session.cost_cents or 0
    return Receipt(
        "Charging session",
        session.id,
        (
            ("Socket", session.plug_id),
            ("Started", _when(session.started_ms)),
            ("Ended", _when(session.ended_ms)),
            ("Energy", f"{session.energy_wh / 1000:.3f} kWh"),
            ("Price", f"{session.price_cents_per_kwh} c/kWh"),
            ("Rounding", "once, at the end, half up to the cent"),
        ),
        cost,
        currency,
    )


def top_up_receipt(entry: EntryRecord, currency: str) -> Receipt:
    return Receipt(
        "Top-up",
        entry.idempotency_key.removeprefix("pi:"),
        (("Date", _when(entry.created_ms)), ("Payment", entry.idempotency_key.removeprefix("pi:"))),
        entry.amount_cents,
        currency,
    )


def receipt_html(receipt: Receipt, pdf_url: str) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in receipt.lines
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Receipt {html.escape(receipt.number)}</title>"
        "<style>body{font-family:sans-serif;max-width:36em;margin:2em auto}"
        "th{text-align:left;padding-right:2em}@media print{a{display:none}}</style></head><body>"
        f"<h1>{html.escape(receipt.title)}</h1><p>Receipt {html.escape(receipt.number)}</p>"
        f"<table>{rows}<tr><th>Amount</th><td><strong>{html.escape(receipt.amount)}"
        "</strong></td></tr></table>"
        f'<p><a href="{html.escape(pdf_url)}">PDF</a> ·'
        ' <a href="javascript:print()">Print</a></p></body></html>'
    )


def receipt_pdf(receipt: Receipt) -> bytes:
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, receipt.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 8, f"Receipt {receipt.number}", new_x="LMARGIN", new_y="NEXT")
    for label, value in (*receipt.lines, ("Amount", receipt.amount)):
        pdf.cell(40, 7, label)
        pdf.cell(0, 7, value, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
