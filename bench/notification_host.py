"""A stand-in desktop notification daemon for ``client_idle.py``: owns
``org.freedesktop.Notifications`` on the D-Bus given by
``DBUS_SESSION_BUS_ADDRESS`` and answers as a daemon does (Desktop
Notifications Specification 1.2: Notify, GetCapabilities,
GetServerInformation, CloseNotification; signals NotificationClosed and
ActionInvoked), showing nothing. Prints ``ready`` once it owns the name and
``notify <summary>`` per pop-up, one line each on stdout. ``GetCapabilities``
answers ``body,actions`` unless ``--capabilities`` gives another
comma-separated list (e.g. ``body,body-markup,actions`` for a daemon that
renders body markup, as GNOME Shell, KDE Plasma and dunst do).

    python bench/notification_host.py [--capabilities body,body-markup,actions]
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus
# signatures from the (Annotated) annotations at class creation.

import argparse
import asyncio
import contextlib
import itertools
from typing import Annotated

from dbus_fast import BusType, NameFlag
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusDict, DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, method, signal

_Strings = Annotated[list[str], DBusSignature("as")]


class _Notifications(ServiceInterface):
    def __init__(self, capabilities: list[str]) -> None:
        super().__init__("org.freedesktop.Notifications")
        self._ids = itertools.count(1)
        self._capabilities = capabilities

    @method()
    def Notify(  # noqa: N802 - D-Bus member names
        self,
        app_name: DBusStr,
        replaces_id: DBusUInt32,
        app_icon: DBusStr,
        summary: DBusStr,
        body: DBusStr,
        actions: _Strings,
        hints: DBusDict,
        expire_timeout: DBusInt32,
    ) -> DBusUInt32:
        print(f"notify {summary}", flush=True)
        return replaces_id or next(self._ids)

    @method()
    def GetCapabilities(self) -> _Strings:  # noqa: N802
        return list(self._capabilities)

    @method()
    def GetServerInformation(  # noqa: N802
        self,
    ) -> Annotated[tuple[str, str, str, str], DBusSignature("ssss")]:
        return ("iotnotify-bench", "iotnotify", "1", "1.2")

    @method()
    def CloseNotification(self, notification_id: DBusUInt32) -> None:  # noqa: N802
        self.NotificationClosed(notification_id, 3)  # 3: closed by CloseNotification

    @signal()
    def NotificationClosed(  # noqa: N802
        self, notification_id: int, reason: int
    ) -> Annotated[tuple[int, int], DBusSignature("uu")]:
        return (notification_id, reason)


async def _serve(capabilities: list[str]) -> None:
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    bus.export("/org/freedesktop/Notifications", _Notifications(capabilities))
    await bus.request_name("org.freedesktop.Notifications", NameFlag.DO_NOT_QUEUE)
    print("ready", flush=True)
    await bus.wait_for_disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--capabilities",
        default="body,actions",
        help="comma-separated GetCapabilities answer (default: body,actions)",
    )
    args = parser.parse_args()
    capabilities = [name for name in args.capabilities.split(",") if name]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(capabilities))


if __name__ == "__main__":
    main()
