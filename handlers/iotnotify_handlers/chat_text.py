"""What a chat line may contain, and how the denylist finds a word in it.

Policy (the moderator applies it before the length check and the filter):

* :func:`clean` removes what lets a sender change how *other* lines look, or
  hide characters inside a word, and keeps everything people write with:

  - control characters (Unicode category Cc: C0, DEL, C1) except tab and
    newline; CR and CRLF become a newline (a bare CR returns a terminal's
    cursor to the line start, over the sender's name), and so do U+2028
    LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR (Unicode Standard, section
    5.8 "Newline Guidelines": line breaks that some renderers honour and
    others show as nothing, so one line cannot look like two only to some);
  - the bidirectional formatting characters (Unicode Standard Annex #9,
    "Explicit Directional Formatting Characters" and "Implicit Directional
    Marks"): U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069. A
    U+202E RIGHT-TO-LEFT OVERRIDE would otherwise reverse the rest of the
    line as others see it, and an unclosed isolate leaks into what follows;
  - invisible characters with no use in running text (Unicode's
    Default_Ignorable_Code_Point list, DerivedCoreProperties.txt, less the
    ones that scripts and emoji need): U+00AD SOFT HYPHEN, U+115F, U+1160,
    U+3164 and U+FFA0 (Hangul fillers, which render blank), U+17B4, U+17B5,
    U+180E, U+200B ZERO WIDTH SPACE, U+2060..U+2064, U+206A..U+206F, U+FEFF,
    U+FFF0..U+FFFB, U+1D173..U+1D17A, U+E0000..U+E0FFF except variation
    selectors and the tag characters of an emoji tag sequence (the flags of
    England, Scotland and Wales, Unicode Technical Standard #51, "Emoji Tag
    Sequences"), and the noncharacters (U+FDD0..U+FDEF, U+xxFFFE/U+xxFFFF).

  - combining marks (Mn, Me) beyond :data:`MAX_MARKS_PER_LETTER` on one
    letter, joiners between them not counted (stacked "zalgo" marks draw
    over other lines).

  Kept on purpose: U+200C ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER
  (Persian and Indic spelling, emoji sequences such as family emoji),
  variation selectors (emoji presentation, U+FE0F), newlines and tabs (the
  CLI prints continuation lines indented, the page keeps line breaks).
  Removed characters are dropped, not replaced with U+FFFD: a replacement
  character inside a word would be visible noise and still split the word.

* :func:`mask` finds denylisted words on a *folded* copy of the text and
  stars them out in the text itself: compatibility decomposition (NFKD:
  fullwidth letters, ligatures, mathematical alphanumerics, circled letters
  become their plain letters), full case folding, and every combining mark
  (Mn, Me) and format character (Cf, including ZWJ/ZWNJ) ignored, so
  ``b\\u200dad``, fullwidth ``\\uff42\\uff41\\uff44`` and ``bád`` all match
  ``bad`` (Unicode Standard Annex #15, "Unicode Normalization Forms"; the
  Unicode Standard, section 3.13 "Default Caseless Matching"). The stored
  text keeps what the user typed, less what :func:`clean` removed, with the
  matched spans starred.

  Latin small capitals (U+1D00 block: ``\\u1d05\\u1d00\\u0280\\u0274``) are
  compared as their letters, as their Unicode names say.
  Letters of other scripts that look like Latin ones are compared as the
  Latin letters they look like (Unicode Technical Standard #39, "Confusable
  Detection", its confusables.txt data through the confusable_homoglyphs
  package): Cyrillic ``\\u0430``, Greek ``\\u03bf`` and Cherokee ``\\u13aa``
  in a Latin word do not hide it, in either case. This goes one way: Latin
  letters are never read as other ones (Turkish dotless ``\\u0131`` is not
  ``i``; ``h3ck`` and ``he11`` are spelling, not look-alikes), and a word of
  another script is matched as written.
  Nor are letters spread out (``d a r n``): words are whole words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from iotnotify.display_text import BIDI_FORMATTING

__all__ = ["MASK", "MAX_MARKS_PER_LETTER", "clean", "fold", "is_blank", "mask"]

MASK: Final = "*"

# Ranges written as escapes: the characters themselves are invisible in source.
# The bidi formatting characters are the SDK's list, which its displays remove
# too (iotnotify.display_text), so the two cannot drift apart.
_INVISIBLE: Final = (
    BIDI_FORMATTING + "\u00ad\u115f\u1160\u17b4\u17b5\u180e"
    "\u200b\u2060-\u2064\u206a-\u206f"
    "\u3164\ufeff\uffa0\ufff0-\ufffb"
    "\ufdd0-\ufdef\ufffe\uffff"
    "\U0001d173-\U0001d17a"
    "\U000e0000-\U000e00ff\U000e01f0-\U000e0fff"
)
_CONTROLS: Final = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_REMOVED: Final = re.compile(f"[{_CONTROLS}{_INVISIBLE}]")
# Noncharacters of the supplementary planes: U+1FFFE, U+1FFFF, ... U+10FFFF.
_PLANE_NONCHARACTERS: Final = re.compile(
    "[" + "".join(f"\\U{p:04x}fffe\\U{p:04x}ffff" for p in range(1, 17)) + "]"
)
# An emoji tag sequence: U+1F3F4 WAVING BLACK FLAG, tag characters, U+E007F
# CANCEL TAG (UTS #51, "Emoji Tag Sequences"). Its tags are kept.
_EMOJI_TAG_SEQUENCE: Final = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
_NEWLINES: Final = re.compile("\r\n?|[\u2028\u2029]")
MAX_MARKS_PER_LETTER: Final = 10
"""Combining marks kept on one letter; the rest of a longer run is dropped.

Stacked marks ("zalgo" text) draw over the lines above and below. Writing
needs far fewer (Vietnamese puts 2 on a letter, Hebrew with cantillation and
most Tibetan stacks 4-5); the deepest stack in use, Tibetan's Kalachakra
monogram, has 10. Unicode's own bound for any text is 30 (Unicode Standard
Annex #15, "Stream-Safe Text Format")."""


def clean(text: str) -> str:
    """``text`` without the characters the module's policy removes (never raises)."""
    text = _NEWLINES.sub("\n", text)
    kept: list[str] = []
    start = 0
    for flag in _EMOJI_TAG_SEQUENCE.finditer(text):
        kept.append(_strip(text[start : flag.start()]))
        kept.append(flag.group(0))
        start = flag.end()
    kept.append(_strip(text[start:]))
    return _limit_marks("".join(kept))


def is_blank(text: str) -> bool:
    """True when ``text`` would show as nothing: only whitespace (``str.isspace``:
    spaces of every width, no-break and ideographic spaces), U+2800 BRAILLE
    PATTERN BLANK (a symbol, not a space, but it renders empty), and marks and
    format characters (Mn, Me, Cf: joiners, variation selectors, U+034F
    COMBINING GRAPHEME JOINER), which show nothing without a letter."""
    return all(
        char.isspace() or char == "\u2800" or unicodedata.category(char) in _NOTHING_ALONE
        for char in text
    )


_NOTHING_ALONE: Final = ("Mn", "Me", "Cf")


def _limit_marks(text: str) -> str:
    """``text`` with at most MAX_MARKS_PER_LETTER combining marks (Mn, Me) on a letter.

    Format characters (Cf: joiners) between marks neither count nor end the
    run: the marks after a ZWJ still stack on the same letter.
    """
    out: list[str] = []
    run = 0
    for char in text:
        category = unicodedata.category(char)
        if category in ("Mn", "Me"):
            run += 1
            if run > MAX_MARKS_PER_LETTER:
                continue
        elif category != "Cf":
            run = 0
        out.append(char)
    return "".join(out)


def _strip(text: str) -> str:
    return _PLANE_NONCHARACTERS.sub("", _REMOVED.sub("", text))


@lru_cache(maxsize=4096)
def _as_latin(char: str) -> str | None:
    """The ASCII letters or digits ``char`` stands for as a look-alike, or None.

    Only letters of other scripts (UTS #39's confusables: Cyrillic, Greek,
    Cherokee...) and Latin small capitals (no decomposition, not in
    confusables.txt; their Unicode names say which letter) are read so.
    Latin letters stay themselves: Turkish dotless ``\u0131`` is not ``i``
    ("s\u0131k" is a word of its own), and ASCII is never reinterpreted
    (``0`` is not ``O``, ``rn`` is not ``m``). The lower-case form is
    looked up first: Cyrillic capital I's prototype is ``l``, its small
    letter's ``i``, and ASCII ``I`` folds to ``i``.
    """
    if char.isascii() or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return None
    name = unicodedata.name(char, "")
    if name.startswith("LATIN LETTER SMALL CAPITAL ") and len(name) == 28:
        return name[-1].lower()
    # Loads its 0.9 MB table on first use, not at the moderator's cold start.
    from confusable_homoglyphs import categories, confusables

    for candidate in dict.fromkeys((char.casefold(), char)):
        if len(candidate) != 1 or categories.alias(candidate) in ("LATIN", "COMMON"):
            continue
        found = confusables.is_confusable(candidate, greedy=True)
        for entry in found[0]["homoglyphs"] if found else ():
            glyph = entry["c"]
            if isinstance(glyph, str) and glyph.isascii() and glyph.isalnum():
                return glyph
    return None


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    # The character as typed first: compatibility decomposition can turn a
    # look-alike into a letter that looks like no Latin one (Greek capital
    # lunate sigma, like C, decomposes to capital sigma).
    latin = _as_latin(char)
    if latin is None:
        latin = "".join(_as_latin(c) or c for c in unicodedata.normalize("NFKD", char))
    decomposed = unicodedata.normalize("NFKD", latin.casefold())
    return "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me", "Cf"))


def fold(text: str) -> str:
    """``text`` as the denylist compares it: NFKD, Latin look-alikes as the
    letters they look like, case-folded, without marks or Cf."""
    return "".join(_fold_char(char) for char in text)


def mask(text: str, words: Sequence[str]) -> str:
    """``text`` with every whole-word match of ``words`` starred out.

    Matching is on :func:`fold` of both sides, so case, compatibility forms,
    accents and invisible joiners do not hide a word; words are literal
    (``a.b`` is not a pattern). A match is replaced by one ``*`` per folded
    character, covering every original character it spans.
    """
    folded_words = sorted({fold(w.strip()) for w in words if fold(w.strip()).strip()}, key=len)
    if not folded_words:
        return text
    pattern = re.compile(
        r"(?<!\w)(" + "|".join(re.escape(w) for w in reversed(folded_words)) + r")(?!\w)"
    )
    folded: list[str] = []
    origin: list[int] = []  # origin[i]: index in ``text`` of folded character i
    for index, char in enumerate(text):
        piece = _fold_char(char)
        folded.append(piece)
        origin.extend([index] * len(piece))
    spans: list[tuple[int, int, int]] = []
    for match in pattern.finditer("".join(folded)):
        first, last = origin[match.start()], origin[match.end() - 1] + 1
        # Marks after the word's last letter belong to it (``bad\u0301``).
        while last < len(text) and unicodedata.category(text[last]) in ("Mn", "Me"):
            last += 1
        spans.append((first, last, match.end() - match.start()))
    out: list[str] = []
    position = 0
    for first, last, length in spans:
        out.append(text[position:first])
        out.append(MASK * length)
        position = last
    out.append(text[position:])
    return "".join(out)
