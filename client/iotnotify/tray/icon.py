"""The tray icon image, drawn with Pillow: a bell, and a red badge with the unread count."""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageDraw

from iotnotify.tray.state import badge_text

__all__ = ["draw_icon"]

_BELL_ONLINE = (46, 125, 240, 255)
_BELL_OFFLINE = (140, 140, 140, 255)
_BADGE = (220, 38, 38, 255)
_WHITE = (255, 255, 255, 255)
# The badge's characters as 3x5 pixel patterns, drawn as scaled squares: a
# font engine (Pillow's FreeType) would cost an always-on tray about 1 MiB
# of memory for eleven characters.
_GLYPHS: Final = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    "+": ("000", "010", "111", "010", "000"),
}


def _draw_text(
    draw: ImageDraw.ImageDraw, text: str, centre: tuple[float, float], pixel: float
) -> None:
    width = (4 * len(text) - 1) * pixel  # 3 columns per glyph, 1 between glyphs
    left, top = centre[0] - width / 2, centre[1] - 2.5 * pixel
    for index, char in enumerate(text):
        for row, bits in enumerate(_GLYPHS[char]):
            for column, bit in enumerate(bits):
                if bit == "1":
                    x = left + (4 * index + column) * pixel
                    y = top + row * pixel
                    draw.rectangle((x, y, x + pixel - 1, y + pixel - 1), fill=_WHITE)


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
        _draw_text(draw, text, centre, pixel=max(1, round((4 if len(text) == 1 else 3) * s)))
    return image
