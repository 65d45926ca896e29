"""The tray icon image, drawn with Pillow: a bell, and a red badge with the unread count."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from iotnotify.tray.state import badge_text

__all__ = ["draw_icon"]

_BELL_ONLINE = (46, 125, 240, 255)
_BELL_OFFLINE = (140, 140, 140, 255)
_BADGE = (220, 38, 38, 255)


def draw_icon(
    *, unread: int, online: bool = True, paused: bool = False, size: int = 64
) -> Image.Image:
    """An RGBA square; grey bell when offline, a bar across it when paused."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 64
    colour = _BELL_ONLINE if online else _BELL_OFFLINE
    draw.pieslice((12 * s, 8 * s, 52 * s, 48 * s), 180, 360, fill=colour)
    draw.rectangle((12 * s, 28 * s, 52 * s, 46 * s), fill=colour)
    draw.rectangle((6 * s, 44 * s, 58 * s, 50 * s), fill=colour)
    draw.ellipse((26 * s, 48 * s, 38 * s, 60 * s), fill=colour)
    if paused:
        draw.line((8 * s, 56 * s, 56 * s, 8 * s), fill=(30, 30, 30, 255), width=max(1, int(5 * s)))
    text = badge_text(unread)
    if text:
        radius = 15 * s
        centre = (size - radius - 1, radius + 1)
        draw.ellipse(
            (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
            fill=_BADGE,
        )
        font = ImageFont.load_default(size=max(8, int((18 if len(text) == 1 else 14) * s)))
        draw.text(centre, text, fill=(255, 255, 255, 255), font=font, anchor="mm")
    return image
