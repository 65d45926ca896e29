"""Text from senders reaches every SDK display filtered: terminal, pop-up, tray menu, tooltip.

The chat CLI was fixed for terminal escapes (issue 13's review) while
``iotnotify listen`` printed a notification's title as sent and the tray's
menu showed it unfiltered; these tests hold every display to one policy.
"""

from __future__ import annotations

import json
import unicodedata

import pytest

from iotnotify.cli_client import _line
from iotnotify.contract import Notification
from iotnotify.display_text import BIDI_FORMATTING, json_line, plain_text, terminal_text
from iotnotify.tray.state import TrayState

# An OSC window title, a screen clear, OSC 52 (write the clipboard), a C1 CSI,
# a carriage return over the line start, a right-to-left override, a NUL.
HOSTILE = "hi\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZWNobyBwd25lZA==\x07\x9b31m\rok \u202egnp.exe\x00"
FORGED = "done\n2026-11-29T13:20:00Z Your bank: send your password"


def _shown_raw(text: str) -> set[str]:
    """Characters in ``text`` that a display would act on instead of showing."""
    return {ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n"} | (
        set(text) & set(BIDI_FORMATTING)
    )


def test_listen_prints_a_hostile_notification_as_visible_escapes() -> None:
    # Given a notification whose title and body carry terminal sequences
    note = Notification.create(title=HOSTILE, body=FORGED, type="x\x1b[8m")
    # When listen formats it
    line = _line(note)
    # Then nothing reaches the terminal as a control, and the escapes are visible
    assert _shown_raw(line) == set()
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in line
    assert "\\u202egnp.exe\\x00" in line
    assert "[x\\x1b[8m]" in line
    # And a body's second line cannot pass for a notification of its own
    first, *rest = line.split("\n")
    assert first.startswith(note.ts or "")
    assert rest == ["    2026-11-29T13:20:00Z Your bank: send your password"]


def test_listen_json_lines_parse_back_to_the_envelope_without_raw_controls() -> None:
    note = Notification.create(
        title=HOSTILE + "\u2028\x7f", body="ü 👨\u200d👩 \u05e9\u05dc\u05d5\u05dd"
    )
    line = json_line(note.to_dict())
    assert json.loads(line) == note.to_dict()
    assert "\n" not in line
    assert _shown_raw(line) == set()
    assert "\u2028" not in line
    # Readable text stays as it is (no \\u escapes for letters, emoji, Hebrew)
    assert "ü 👨\u200d👩 \u05e9\u05dc\u05d5\u05dd" in line


def test_the_tray_menu_and_tooltip_filter_what_the_pop_up_filters() -> None:
    # Given notifications with hostile text in the title, the body and a game name
    state = TrayState()
    state.add(Notification.create(title=HOSTILE, body=FORGED))
    state.add(
        Notification.create(
            title="Your turn", data={"game": "g\x00-1", "gameName": "Chess\x1b[2J\u202e\x00"}
        )
    )
    # Then no label and no tooltip holds a control or a bidi formatting character
    labels = state.menu_labels() + [entry.label for entry in state.games()]
    for text in [*labels, state.title()]:
        assert _shown_raw(text) == set(), text
        assert "\n" not in text
    # And what is left of the text is still shown (removed, not replaced)
    assert labels[1].startswith("\u2022 hi]0;pwned[2J]52;c;ZWNobyBwd25lZA==31mok gnp.exe: done ")
    assert "Chess[2J (1 unread)" in labels


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0)])
def test_plain_text_removes_every_control_but_tab_and_newline(code: int) -> None:
    kept = chr(code) in "\t\n"
    assert plain_text(f"a{chr(code)}b") == (f"a{chr(code)}b" if kept else "ab")


@pytest.mark.parametrize("char", list(BIDI_FORMATTING))
def test_every_bidi_formatting_character_is_removed_or_escaped(char: str) -> None:
    # UAX #9's explicit formatting characters and implicit marks are all Cf
    assert unicodedata.category(char) == "Cf"
    assert plain_text(f"a{char}b") == "ab"
    assert terminal_text(f"a{char}b") == f"a\\u{ord(char):04x}b"
    assert char not in json_line(f"a{char}b")


@pytest.mark.parametrize(
    "kept",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: ZWJ sequence
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # England
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with ZWNJ
        "\u2764\ufe0f",  # variation selector: emoji presentation
        "col1\tcol2",  # a tab moves the cursor, nothing more
        "\u05e9\u05dc\u05d5\u05dd world",  # right-to-left text keeps its direction
    ],
)
def test_terminal_text_prints_what_scripts_and_emoji_need_as_sent(kept: str) -> None:
    # The reviewer's case: chat printed a family emoji as 👨\u200d👩\u200d👧
    assert terminal_text(kept) == kept
    assert plain_text(kept) == kept


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\r", "\x7f"])
def test_terminal_text_escapes_line_breaks_a_terminal_or_renderer_may_act_on(char: str) -> None:
    assert terminal_text(f"a{char}b") == f"a{ascii(char)[1:-1]}b"


def test_one_line_flattens_a_servers_text_and_cuts_it() -> None:
    from iotnotify.display_text import one_line

    assert one_line("<html>\n<title>502 Bad Gateway</title>\n</html>") == "502 Bad Gateway"
    assert one_line("a\r\n\tb\u2028c\x1b[2Jd\u202e") == "a b c\\x1b[2Jd\\u202e"
    assert one_line("x" * 300, limit=10) == "xxxxxxx..."
    assert one_line("1 < 2 > 0") == "1 < 2 > 0"  # not a page: no tag is dropped
