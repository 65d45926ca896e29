"""Refuse unmasked client frames on the emulator's WebSocket (RFC 6455 section 5.1).

RFC 6455 section 5.1: "a client MUST mask all frames that it sends to the
server ... The server MUST close the connection upon receiving a frame that
is not masked. In this case, a server MAY send a Close frame with a status
code of 1002 (protocol error)". AWS IoT Core's WebSocket endpoint is an RFC
6455 server; aiohttp's frame reader is direction-agnostic and unmasks
whatever it is given (aiohttp's threat model, aio-libs/aiohttp pull request
12677, item 3.1: "Unmasked client frames accepted ... web_ws.py does not
enforce client-mask either"), so a hand-rolled client that forgets to mask
would work against the emulator and fail against AWS.

:class:`MaskedOnlyWebSocketResponse` puts a :class:`_MaskCheck` in front of
aiohttp's reader. It walks frame headers only (two bytes, the extended
length when there is one) and skips payloads without touching them, so an
inbound PUBLISH costs a few integer operations more; a frame whose mask bit
is clear ends the connection with Close 1002, after the frames before it
in the same read were handed on.

It relies on two aiohttp internals, checked by
``tests/integration/emulator/test_emulator_websocket.py`` on every run:
``WebSocketResponse._post_start`` installs the reader with
``RequestHandler.set_parser`` (which also feeds it bytes that arrived with
the upgrade request, ``_message_tail``), and ``WebSocketResponse._reader``
is the message queue whose ``set_exception`` makes ``receive()`` close with
the exception's code.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import WSCloseCode, web
from aiohttp import __version__ as aiohttp_version
from aiohttp.http_websocket import WebSocketError

__all__ = ["MaskedOnlyWebSocketResponse"]

log = logging.getLogger("iotnotify_emulator")

# Frame header sizes of a masked client frame (RFC 6455 section 5.2): two
# bytes, the 16- or 64-bit extended length, then the 4-byte masking key.
_MASK_BIT: Final = 0x80
_LENGTH_16: Final = 126
_LENGTH_64: Final = 127


class _MaskCheck:
    """Stands where aiohttp's ``WebSocketReader`` stands; hands data on to it
    until a frame arrives unmasked. The reader's interface as
    ``RequestHandler.data_received`` uses it: ``feed_data(data) -> (eof, tail)``
    and ``feed_eof()``."""

    __slots__ = ("_failed", "_inner", "_partial", "_response", "_skip")

    def __init__(self, inner: Any, response: web.WebSocketResponse) -> None:
        self._inner = inner
        self._response = response
        self._skip = 0  # payload bytes of the current frame still to come
        self._partial = b""  # a frame header split across reads
        self._failed = False

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        offset = self._first_unmasked(data)
        if offset is None:
            result: tuple[bool, bytes] = self._inner.feed_data(data)
            return result
        # The frames before the unmasked one were sent properly: act on them.
        if offset:
            eof, _ = self._inner.feed_data(data[:offset])
            if eof:
                return True, b""
        self._failed = True
        queue = self._response._reader  # private: see the module docstring
        if queue is not None:
            queue.set_exception(
                WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frame is not masked")
            )
        return True, b""

    def _first_unmasked(self, data: bytes) -> int | None:
        """Offset in ``data`` of the first frame header whose mask bit is clear
        (0 when that header began in an earlier read), or None."""
        size = len(data)
        partial = self._partial
        if partial:
            buffer = partial + data
            base = len(partial)
            position = 0
            self._partial = b""
        else:
            if self._skip >= size:
                self._skip -= size
                return None
            buffer = data
            base = 0
            position = self._skip
        end = len(buffer)
        while position < end:
            if end - position < 2:
                self._partial = buffer[position:]
                self._skip = 0
                return None
            second = buffer[position + 1]
            if not second & _MASK_BIT:
                return max(position - base, 0)
            length = second & 0x7F
            if length == _LENGTH_16:
                header = 8
            elif length == _LENGTH_64:
                header = 14
            else:
                position += 6 + length
                continue
            if end - position < header:
                self._partial = buffer[position:]
                self._skip = 0
                return None
            length = int.from_bytes(buffer[position + 2 : position + header - 4], "big")
            position += header + length
        self._skip = position - end
        return None


class MaskedOnlyWebSocketResponse(web.WebSocketResponse):
    """``aiohttp.web.WebSocketResponse`` that fails the connection (Close 1002)
    on a client frame without a mask, as RFC 6455 section 5.1 requires of a
    server. Its ``receive()`` then returns a ``WSMsgType.ERROR`` message."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        if not _internals_present(handler, self):
            # An aiohttp whose internals moved: serve without the check rather
            # than fail every connection (the tests above catch it here).
            _warn_unchecked()
            super()._post_start(request, protocol, writer)
            return
        # Bytes the client sent right behind the upgrade request: aiohttp's
        # set_parser would feed them to its reader unchecked.
        early: bytes = handler._message_tail
        handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        handler._payload_parser = _MaskCheck(handler._payload_parser, self)
        if early:
            handler.data_received(early)


def _internals_present(handler: Any, response: web.WebSocketResponse) -> bool:
    """Whether this aiohttp has the internals the check relies on (module docstring)."""
    return (
        isinstance(getattr(handler, "_message_tail", None), bytes)
        and hasattr(handler, "_payload_parser")
        and hasattr(handler, "data_received")
        and hasattr(response, "_reader")
    )


_warned = False


def _warn_unchecked() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "aiohttp %s lacks the internals ws_mask uses: unmasked client frames "
            "are not refused (RFC 6455 section 5.1)",
            aiohttp_version,
        )
