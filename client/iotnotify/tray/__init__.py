"""The desktop tray notifier (``iotnotify tray``).

:mod:`~iotnotify.tray.state` holds every decision and needs no screen;
:mod:`~iotnotify.tray.app` wires it to pystray, desktop-notifier, the OS
keyring and the subscriber. See README.md here for autostart instructions.
"""

from __future__ import annotations

from iotnotify.tray.state import Alert, TrayItem, TrayState, badge_text

__all__ = ["Alert", "TrayItem", "TrayState", "badge_text"]
