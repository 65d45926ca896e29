"""pystray's X11 icon, painting a :class:`~iotnotify.tray.icon.Bell` without Pillow.

pystray's xorg backend paints its icon in ``Icon._draw``: it scales the PIL
image to the window with ``PIL.Image.new``/``resize``/``paste`` and sends it
with python-xlib's ``put_pil_image`` (pystray/_xorg.py). That is the only
place the backend touches Pillow, and Pillow's C core with its bundled image
libraries would stay resident in the always-on tray (about 4 MiB RSS, issue
11 §2). This subclass overrides ``_draw`` alone: it renders the bell at the
window's size and sends the pixels with python-xlib's ``put_image``
(X11 protocol, PutImage, ZPixmap), so Pillow is never imported.

``icon.icon`` is a :class:`~iotnotify.tray.icon.Bell` here, not a PIL
image; the rest of pystray (docking, events, title, the activation click)
is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

import Xlib.error
import Xlib.X
from pystray import _xorg

from iotnotify.tray.icon import Bell, zpixmap

__all__ = ["XorgIcon"]

# PutImage's fixed part (X11 protocol encoding: 24 bytes before the data).
_PUT_IMAGE_HEADER: Final = 24


class XorgIcon(_xorg.Icon):  # type: ignore[misc]  # pystray ships no type hints
    """pystray's xorg ``Icon`` whose ``icon`` is a :class:`Bell`."""

    # Set by pystray's __init__; here: ((bell, width, height), pixels) or None.
    _icon_data: Any
    #: Why the X server closed the connection under the running loop (the
    #: session ended, Xvfb or a VNC server stopped), or None.
    display_lost: Xlib.error.ConnectionClosedError | None = None

    def _events(self) -> Iterator[Any]:
        # pystray's loop logs any exception from here as "An error occurred
        # in the main loop" with its traceback and returns as if Quit had
        # been chosen. A closed display ends the loop the same way, but
        # quietly, and says so in ``display_lost`` for TrayApp to report.
        try:
            yield from super()._events()
        except Xlib.error.ConnectionClosedError as exc:
            self.display_lost = exc

    def __del__(self) -> None:
        # pystray's __del__ destroys the window and closes the display: on a
        # connection the server closed that raised "Exception ignored in
        # Icon.__del__" at exit; so did a constructor that never connected.
        with contextlib.suppress(Xlib.error.ConnectionClosedError, AttributeError):
            super().__del__()

    def _draw(self) -> None:
        # Runs on pystray's loop thread (expose, configure, icon updates),
        # as the method it replaces. pystray resets ``_icon_data`` to None
        # when the icon changes, which drops this cache.
        try:
            geometry = self._window.get_geometry()
            width, height = geometry.width, geometry.height
            cached = self._icon_data
            if cached is None or cached[0] != (self._icon, width, height):
                bell: Bell = self._icon  # what TrayApp sets on this backend
                msb_first = self._display.display.info.image_byte_order == Xlib.X.MSBFirst
                pixels = zpixmap(bell, width, height, msb_first=msb_first)
                cached = ((bell, width, height), pixels)
                self._icon_data = cached
            self._put(width, height, geometry.depth, cached[1])
        except Xlib.error.BadDrawable:
            pass  # the window is gone (quitting): nothing to paint

    def _put(self, width: int, height: int, depth: int, data: bytes) -> None:
        # One request carries at most max_request_length 4-byte units.
        stride = 4 * width
        limit = (self._display.display.info.max_request_length << 2) - _PUT_IMAGE_HEADER
        rows_per_request = max(1, limit // stride)
        for top in range(0, height, rows_per_request):
            rows = min(rows_per_request, height - top)
            chunk = data[top * stride : (top + rows) * stride]
            self._window.put_image(self._gc, 0, top, width, rows, Xlib.X.ZPixmap, depth, 0, chunk)
        self._display.flush()
