"""Drawing pieces the invoice shares with the postal label: a rubber stamp and an address block."""

from __future__ import annotations

from collections.abc import Sequence

from reportlab.lib.colors import Color
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from invoicing.model import Address
from invoicing.pdf.fonts import font_for
from invoicing.pdf.text import draw_text, wrap_text

__all__ = ["address_lines", "draw_address_block", "draw_stamp"]


def draw_stamp(canvas: Canvas, x: float, y: float, big: str, small: str, colour: Color, angle: float = 28) -> None:
    """A rubber stamp centred on (x, y), turned by `angle`: a double rounded frame, `big` over `small`.

    Draw it before the content it marks, in a light colour, so that what it covers stays legible."""
    canvas.saveState()
    canvas.translate(x, y)
    canvas.rotate(angle)
    canvas.setStrokeColor(colour)
    canvas.setFillColor(colour)
    canvas.setLineWidth(5)
    canvas.roundRect(-80 * mm, -30 * mm, 160 * mm, 60 * mm, 6 * mm)
    canvas.setLineWidth(1.5)
    canvas.roundRect(-76 * mm, -26 * mm, 152 * mm, 52 * mm, 4 * mm)
    draw_text(canvas, 0, -2 * mm, big, 80, align="center")
    draw_text(canvas, 0, -19 * mm, small, 30, align="center")
    canvas.restoreState()


def address_lines(address: Address) -> list[str]:
    """A Chinese postal address written large to small, as on an envelope: postal code, province and
    city, street, then the recipient (and the country when not China). Empty parts are left out."""
    place = address.city if address.city.startswith(address.province) else address.province + address.city
    lines = [
        f"邮编 {address.postal_code}" if address.postal_code else "",
        place,
        address.line1,
        address.line2,
        address.recipient,
        "" if address.country == "CN" else address.country,
    ]
    return [line for line in lines if line]


def draw_address_block(
    canvas: Canvas,
    x: float,
    y: float,
    width: float,
    lines: Sequence[str],
    *,
    size: float = 10,
    leading: float | None = None,
) -> float:
    """Address lines from top baseline `y` downwards, each wrapped to `width`; returns the next baseline."""
    leading = leading or size * 1.3
    for text in lines:
        font = font_for(text)
        canvas.setFont(font, size)
        for part in wrap_text(text, font, size, width):
            canvas.drawString(x, y, part)
            y -= leading
    return y
