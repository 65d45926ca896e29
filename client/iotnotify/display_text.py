"""Text someone else wrote, made safe to show: pop-ups, menu labels, terminals.

A notification's title and body and a chat line are written by a sender, not
by the reader, and reach three kinds of display in the SDK: the desktop
pop-up and the tray's menu (:func:`plain_text`), and a terminal
(:func:`terminal_text`, for ``iotnotify listen`` and ``iotnotify chat``).
Each display gets the one policy here, so a surface cannot be left out.

What a sender could do with these characters:

* control characters (Unicode category Cc: C0, DEL, C1): in a terminal an
  ESC or C1 sequence retitles the window, clears the screen, moves the cursor
  over earlier lines or (OSC 52) writes the clipboard; a CR returns to the
  line start, over the sender's name. D-Bus strings may not hold NUL at all:
  a pop-up or menu label with one makes the bus drop the connection (D-Bus
  specification, "Valid strings");
* the bidirectional formatting characters (:data:`BIDI_FORMATTING`; Unicode
  Standard Annex #9, "Explicit Directional Formatting Characters" and
  "Implicit Directional Marks"): a U+202E RIGHT-TO-LEFT OVERRIDE shows
  "exe.png" for "gnp.exe", and an unclosed embedding or isolate runs on into
  whatever the display shows next to it. Right-to-left text itself keeps its
  direction: the bidirectional algorithm needs no marks for that.

The chat moderator (server side) removes these and more before a line is
stored; this module is the client's own defence, for notifications (which no
moderator sees) and for servers it does not trust.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["BIDI_FORMATTING", "json_line", "one_line", "plain_text", "terminal_text"]

# Written as escapes: the characters themselves are invisible in source.
BIDI_FORMATTING: Final = (
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066\u2067\u2068\u2069"  # LRI, RLI, FSI, PDI
)
"""The bidirectional formatting characters (UAX #9), as one string."""

_CONTROLS: Final = [code for code in range(0x20) if chr(code) not in "\t\n"] + list(
    range(0x7F, 0xA0)
)
_REMOVED: Final = dict.fromkeys([*_CONTROLS, *map(ord, BIDI_FORMATTING)])
_TERMINAL_ESCAPED: Final = {
    code: ascii(chr(code))[1:-1]
    for code in [*_CONTROLS, *map(ord, BIDI_FORMATTING), 0x2028, 0x2029]
}
# json.dumps escapes C0 itself; these it leaves raw with ensure_ascii=False.
_JSON_ESCAPED: Final = {
    code: f"\\u{code:04x}"
    for code in [*range(0x7F, 0xA0), 0x2028, 0x2029, *map(ord, BIDI_FORMATTING)]
}


def plain_text(text: str) -> str:
    """``text`` without control characters (but tab and newline) and bidi formatting.

    For displays that render text and take no escapes: desktop pop-ups and
    menu labels. Removed, not replaced: a replacement character would be
    noise where nothing was visible. Never raises.
    """
    return text.translate(_REMOVED)


def terminal_text(text: str) -> str:
    """``text`` safe to print to a terminal, one visible line per line of text.

    The characters a terminal acts on or that reorder what follows, the
    control characters but tab and newline, the bidi formatting characters
    and U+2028/U+2029 (line breaks to some renderers, nothing to others), are
    shown as their Python escape (``\\x1b``, ``\\u202e``), so the reader sees
    that they were sent and no sequence reaches the terminal. Everything else
    is printed as sent: joiners and variation selectors (emoji sequences such
    as a family, Persian spelling), an emoji flag's tag characters, tabs.
    Lines after the first are indented by four spaces, so a newline in a
    sender's text cannot start a line that passes for another message (a long
    line padded to the terminal's width still wraps where the terminal
    wraps it). Never raises.
    """
    return text.translate(_TERMINAL_ESCAPED).replace("\n", "\n    ")


def json_line(value: object) -> str:
    """``value`` as one line of JSON that is safe to print to a terminal.

    Non-ASCII text stays readable (``ensure_ascii=False``), but DEL, the C1
    controls, U+2028/U+2029 and the bidi formatting characters are written as
    ``\\uXXXX`` escapes, which parse back to the same value (RFC 8259,
    section 7). Raises what :func:`json.dumps` raises for a value that is not
    JSON.
    """
    return json.dumps(value, ensure_ascii=False).translate(_JSON_ESCAPED)


_TAG: Final = re.compile(r"<[^>]*>")


def one_line(text: str, *, limit: int = 200) -> str:
    """``text`` from a server, fit for one line of an error message.

    For what a server says when it refuses (an API error's ``message``, an
    HTML error page from a proxy or a wrong port): an error is printed as
    one line (``iotnotify listen``'s ``disconnected: ...``, the CLI's
    ``Error: ...``), and the server is not trusted. Markup tags are dropped
    when the text starts with ``<`` (an HTML page), every run of whitespace,
    newlines included, becomes one space, the characters
    :func:`terminal_text` escapes are escaped, and the result is cut to
    ``limit`` characters (``...`` marks a cut). Never raises.
    """
    if text.lstrip().startswith("<"):
        text = _TAG.sub(" ", text)
    flat = " ".join(text.split()).translate(_TERMINAL_ESCAPED)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
