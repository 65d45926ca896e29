"""The tray icon: a bell, and a red badge with the unread count.

Drawn in pure Python, not with Pillow: the always-on tray on X11 (pystray's
xorg backend) then never loads Pillow, whose C core and bundled image
libraries (libtiff, libjpeg, openjp2, FreeType, HarfBuzz, ...) would stay
resident for as long as the tray runs, about 4 MiB of its RSS (issue 11 §2).
Other pystray backends (AppIndicator, GTK, macOS, Windows) want a Pillow
image and get one from :meth:`IconImage.to_pil`.

The shapes are few (a half disc, rectangles, discs, one thick line and 3x5
pixel glyphs), so each is filled span by span on a 4x supersampled grid and
averaged down: smooth edges at any size the tray asks for, in a few
milliseconds, and only when the icon changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from iotnotify.tray.state import badge_text

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["Bell", "IconImage", "draw_icon", "zpixmap"]

_RGBA = tuple[int, int, int, int]
_TRANSPARENT: Final[_RGBA] = (0, 0, 0, 0)
_BELL_ONLINE: Final[_RGBA] = (46, 125, 240, 255)
_BELL_OFFLINE: Final[_RGBA] = (140, 140, 140, 255)
_PAUSE_BAR: Final[_RGBA] = (30, 30, 30, 255)
_BADGE: Final[_RGBA] = (220, 38, 38, 255)
_WHITE: Final[_RGBA] = (255, 255, 255, 255)
_SUPERSAMPLE: Final = 4  # samples per pixel along each axis
# The badge's characters as 3x5 pixel patterns, drawn as squares snapped to
# whole pixels so they stay sharp at tray sizes (a font engine would cost
# the always-on tray about 1 MiB for eleven characters).
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

# A shape answers, for a horizontal line at height y (pixels, continuous),
# the x interval it covers on that line, or None.
_Span = Callable[[float], tuple[float, float] | None]


@dataclass(frozen=True, slots=True)
class IconImage:
    """An RGBA raster: ``size`` (width, height) pixels, 4 bytes each (straight
    alpha), rows top to bottom; the subset of Pillow's ``Image`` API the
    tray and its tests use."""

    size: tuple[int, int]
    data: bytes

    mode: ClassVar[str] = "RGBA"

    def tobytes(self) -> bytes:
        return self.data

    def getpixel(self, xy: tuple[int, int]) -> _RGBA:
        """The (r, g, b, a) at column ``x``, row ``y``; IndexError outside the image."""
        x, y = xy
        width, height = self.size
        if not (0 <= x < width and 0 <= y < height):
            raise IndexError(f"pixel {xy} is outside a {width}x{height} image")
        at = 4 * (y * width + x)
        r, g, b, a = self.data[at : at + 4]
        return r, g, b, a

    def to_pil(self) -> Image.Image:
        """A Pillow image of the same pixels, for pystray's non-X11 backends."""
        from PIL import Image

        return Image.frombytes("RGBA", self.size, self.data)


@dataclass(frozen=True, slots=True)
class Bell:
    """What the icon shows; :meth:`render` draws it at any size."""

    unread: int = 0
    online: bool = True
    paused: bool = False

    def render(self, size: int = 64) -> IconImage:
        """An RGBA square of ``size`` pixels (at least 1); transparent background."""
        if size < 1:
            raise ValueError(f"icon size must be at least 1 pixel, not {size}")
        s = size / 64  # the drawing below is laid out on a 64-pixel grid
        colour = _BELL_ONLINE if self.online else _BELL_OFFLINE
        layers: list[tuple[_Span, _RGBA]] = [
            (_half_disc(32 * s, 28 * s, 20 * s), colour),
            (_rect(12 * s, 28 * s, 52 * s, 46 * s), colour),
            (_rect(6 * s, 44 * s, 58 * s, 50 * s), colour),
            (_disc(32 * s, 54 * s, 6 * s), colour),
        ]
        if self.paused:
            width = max(1.0, 5 * s)
            layers.append((_thick_line(8 * s, 56 * s, 56 * s, 8 * s, width), _PAUSE_BAR))
        text = badge_text(self.unread)
        if text:
            radius = 15 * s
            cx, cy = size - radius - 1, radius + 1
            layers.append((_disc(cx, cy, radius), _BADGE))
            # Whole pixels, rounded down so the glyphs stay inside the badge.
            pixel = max(1, int((4 if len(text) == 1 else 3) * s))
            layers.extend((square, _WHITE) for square in _glyph_squares(text, cx, cy, pixel))
        return _rasterise(size, layers)


def draw_icon(
    *, unread: int, online: bool = True, paused: bool = False, size: int = 64
) -> IconImage:
    """An RGBA square; grey bell when offline, a bar across it when paused."""
    return Bell(unread=unread, online=online, paused=paused).render(size)


def zpixmap(bell: Bell, width: int, height: int, *, msb_first: bool) -> bytes:
    """``bell`` centred on black as 32-bit ZPixmap rows for a 24-bit TrueColor
    window: pixel value ``r << 16 | g << 8 | b``, 4 bytes a pixel in the
    server's image byte order (``msb_first``), no row padding (4-byte pixels
    meet any scanline pad up to 32 bits). Black background, as pystray's own
    RGB conversion gives."""
    side = max(1, min(width, height))
    image = bell.render(side)
    out = bytearray(4 * width * height)
    left, top = (width - side) // 2, (height - side) // 2
    src = image.data
    for y in range(min(side, height)):
        row = 4 * ((top + y) * width + left)
        for x in range(min(side, width)):
            at = 4 * (y * side + x)
            r, g, b, a = src[at], src[at + 1], src[at + 2], src[at + 3]
            # Over black: premultiply by alpha.
            r, g, b = r * a // 255, g * a // 255, b * a // 255
            out[row : row + 4] = bytes((0, r, g, b) if msb_first else (b, g, r, 0))
            row += 4
    return bytes(out)


def _rect(x0: float, y0: float, x1: float, y1: float) -> _Span:
    return lambda y: (x0, x1) if y0 <= y <= y1 else None


def _disc(cx: float, cy: float, r: float) -> _Span:
    def span(y: float) -> tuple[float, float] | None:
        dy = y - cy
        if abs(dy) > r:
            return None
        dx = math.sqrt(r * r - dy * dy)
        return cx - dx, cx + dx

    return span


def _half_disc(cx: float, cy: float, r: float) -> _Span:
    disc = _disc(cx, cy, r)
    return lambda y: disc(y) if y <= cy else None  # the upper half: the bell's dome


def _thick_line(x0: float, y0: float, x1: float, y1: float, width: float) -> _Span:
    """The rectangle ``width`` wide around the segment (x0, y0)-(x1, y1)."""
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length  # along the segment
    nx, ny = -uy, ux  # across it
    half = width / 2

    def span(y: float) -> tuple[float, float] | None:
        # |(p - a).n| <= half and 0 <= (p - a).u <= length, each linear in x.
        lo, hi = -math.inf, math.inf
        for dx, dy, low, high in ((nx, ny, -half, half), (ux, uy, 0.0, length)):
            base = (y - y0) * dy
            if dx == 0:
                if not low <= base <= high:
                    return None
                continue
            a, b = (low - base) / dx + x0, (high - base) / dx + x0
            lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
        return (lo, hi) if lo <= hi else None

    return span


def _glyph_squares(text: str, cx: float, cy: float, pixel: int) -> list[_Span]:
    width = (4 * len(text) - 1) * pixel  # 3 columns per glyph, 1 between glyphs
    left, top = round(cx - width / 2), round(cy - 2.5 * pixel)
    squares: list[_Span] = []
    for index, char in enumerate(text):
        for row, bits in enumerate(_GLYPHS[char]):
            for column, bit in enumerate(bits):
                if bit == "1":
                    x = left + (4 * index + column) * pixel
                    y = top + row * pixel
                    # Half-open: exactly pixel x pixel whole pixels.
                    squares.append(_rect(x, y, x + pixel - 1e-9, y + pixel - 1e-9))
    return squares


def _rasterise(size: int, layers: list[tuple[_Span, _RGBA]]) -> IconImage:
    k = _SUPERSAMPLE
    samples = size * k
    palette: list[_RGBA] = [_TRANSPARENT]
    for _, colour in layers:
        if colour not in palette:
            palette.append(colour)
    index = {colour: i for i, colour in enumerate(palette)}
    # Paint every layer in order onto a grid of palette indices, one byte a sample.
    grid = [bytearray(samples) for _ in range(samples)]
    for span, colour in layers:
        fill = index[colour]
        for sy, row in enumerate(grid):
            covered = span((sy + 0.5) / k)
            if covered is None:
                continue
            # The samples whose centres (sx + 0.5) / k lie inside the interval.
            first = max(0, math.ceil(covered[0] * k - 0.5))
            last = min(samples - 1, math.floor(covered[1] * k - 0.5))
            if first <= last:
                row[first : last + 1] = bytes([fill]) * (last - first + 1)
    # Average each k x k block: alpha is the covered share, colour the mean
    # of the covered samples (straight alpha, as Pillow's RGBA).
    out = bytearray(4 * size * size)
    total = k * k
    at = 0
    for y in range(size):
        block_rows = grid[y * k : (y + 1) * k]
        for x in range(size):
            block = b"".join(row[x * k : (x + 1) * k] for row in block_rows)
            empty = block.count(0)
            covered_count = total - empty
            if covered_count:
                r = g = b = 0
                for i in range(1, len(palette)):
                    n = block.count(i)
                    if n:
                        pr, pg, pb, _ = palette[i]
                        r, g, b = r + n * pr, g + n * pg, b + n * pb
                out[at : at + 4] = bytes(
                    (
                        round(r / covered_count),
                        round(g / covered_count),
                        round(b / covered_count),
                        round(255 * covered_count / total),
                    )
                )
            at += 4
    return IconImage(size=(size, size), data=bytes(out))
