"""Chat text policy: what the moderator removes, and how the denylist finds words."""

from __future__ import annotations

import pytest

from iotnotify_handlers.chat_text import MAX_MARKS_PER_LETTER, clean, fold, is_blank, mask

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
ZWSP = "\u200b"
ZWJ = "\u200d"
ZWNJ = "\u200c"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        (f"pay to {RLO}gnp.exe", "pay to gnp.exe"),  # shows as "pay to exe.png" otherwise
        ("\u2066isolated\u2069 \u2067x\u2068y", "isolated xy"),
        ("a\u202a\u202b\u202c\u202db\u200e\u200f\u061cc", "abc"),
        (f"b{ZWSP}ad", "bad"),
        ("soft\u00adhyphen\u2060joined\ufeff", "softhyphenjoined"),
        ("\x1b[2J\x1b[Hcleared", "[2J[Hcleared"),  # ESC gone, so no terminal sequence
        ("bell\x07 nul\x00 del\x7f c1\x85\x9b", "bell nul del c1"),
        ("name: hi\rbob: forged", "name: hi\nbob: forged"),  # CR would overwrite the line
        ("crlf\r\nline", "crlf\nline"),
        ("line\u2028separator\u2029paragraph", "line\nseparator\nparagraph"),
        ("tabs\tand\nnewlines stay", "tabs\tand\nnewlines stay"),
        ("blank\u3164filler\uffa0\u115f", "blankfiller"),
        ("tags\U000e0041\U000e0042 hidden", "tags hidden"),
        ("nonchar\ufdd0\uffff\U0001fffe", "nonchar"),
    ],
)
def test_clean_removes_controls_bidi_overrides_and_invisible_characters(
    typed: str, stored: str
) -> None:
    assert clean(typed) == stored


@pytest.mark.parametrize(
    "text",
    [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian needs ZWNJ
        f"family \U0001f468{ZWJ}\U0001f469{ZWJ}\U0001f467",  # emoji ZWJ sequence
        "heart \u2764\ufe0f",  # emoji presentation selector
        # flag of Scotland: black flag, tags "gbsct", cancel tag (UTS #51)
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "שלום and مرحبا, café, 東京",  # right-to-left and other scripts themselves
    ],
)
def test_clean_keeps_what_scripts_and_emoji_need(text: str) -> None:
    assert clean(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Darn it, HECK!", "**** it, ****!"),
        (f"b{ZWJ}ad news", "*** news"),  # a joiner inside the word (kept in text)
        (f"b{ZWNJ}a{ZWJ}d", "***"),
        ("\uff42\uff41\uff44 luck", "*** luck"),  # fullwidth
        (
            "\U0001d41b\U0001d41a\U0001d41d \U0001d553\U0001d552\U0001d555",
            "*** ***",
        ),  # mathematical bold and double-struck
        ("ⓑⓐⓓ", "***"),  # circled
        ("bád and ba\u0301d\u0336", "*** and ***"),  # accents and combining marks
        ("BAD", "***"),
        ("badge bad-ish", "badge ***-ish"),  # whole words only
        ("a.b a+b", "*** a+b"),  # words are literal, not patterns
        ("Straße", "*******"),  # case folding: ß is ss, one star per folded letter
    ],
)
def test_mask_compares_folded_text_and_stars_the_original_span(text: str, masked: str) -> None:
    assert mask(text, ["bad", "darn", "heck", "a.b", "strasse"]) == masked


def test_mask_folds_the_denylist_too() -> None:
    assert mask("bad", ["\uff22\uff21\uff24"]) == "***"
    assert mask("nothing to hide", []) == "nothing to hide"
    assert mask("nothing to hide", [" ", "\u200b"]) == "nothing to hide"


def test_fold_is_nfkd_casefolded_without_marks_or_format_characters() -> None:
    assert fold("ﬁ Ⅻ \uff58 É") == "fi xii x e"
    assert fold(f"a{ZWJ}b{ZWSP}c\ufe0f") == "abc"
    assert fold("Ǆ") == "dz"  # the caron is a combining mark after NFKD


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("d\u0430rn it", "**** it"),  # Cyrillic small a
        ("\u041d\u0415\u0421\u041a!", "****!"),  # Cyrillic capitals: HECK
        ("h\u0435\u0441k", "****"),  # Cyrillic small ie and es
        ("\u0432\u0430d", "\u0432\u0430d"),  # Cyrillic ve looks like no Latin small letter
        ("b\u03b1d", "***"),  # Greek alpha
        ("SH\u0406T", "****"),  # Cyrillic capital I: its small letter looks like i
        ("\u0397\u0395\u03f9\u039a", "****"),  # Greek capitals with a lunate sigma: HECK
        ("\u13f4ad", "***"),  # Cherokee letter yv, a look-alike of B
        ("d\u0430\u0301rn", "****"),  # look-alike and accent: one star per folded letter
    ],
)
def test_mask_sees_through_look_alike_letters_of_other_scripts(text: str, masked: str) -> None:
    # UTS #39 confusables: a Latin word spelled with other scripts' look-alikes
    assert mask(text, ["bad", "darn", "heck", "shit"]) == masked


@pytest.mark.parametrize(
    "text",
    [
        "h3ck b4d d4rn",  # ASCII spelling games are not look-alikes
        "he11o m0de",  # ASCII digits stay digits
        "\u0434\u0430\u0440 \u0431\u0430\u0434",  # Russian words matched as written
        "\u03b2\u03b1\u03b4",  # Greek beta alpha delta: looks like no Latin "bad"
        "s\u0131k s\u0131k",  # Turkish "often": a dotless i is a Latin letter of its own
        "b\u0251d",  # Latin alpha (IPA) is Latin too
    ],
)
def test_mask_leaves_ascii_spelling_and_other_scripts_words_alone(text: str) -> None:
    assert mask(text, ["bad", "darn", "heck", "hello", "made", "sik"]) == text


def test_a_denylisted_word_in_another_script_is_matched_through_the_same_fold() -> None:
    # The denylist goes through the same fold, so a Cyrillic word still matches itself
    assert mask("\u0434\u0443\u0440\u0430\u043a!", ["\u0434\u0443\u0440\u0430\u043a"]) == "*****!"


def test_small_capitals_are_compared_as_their_letters() -> None:
    # LATIN LETTER SMALL CAPITAL D, A, R, N: no decomposition, not in confusables.txt
    assert mask("\u1d05\u1d00\u0280\u0274 it", ["darn"]) == "**** it"
    assert fold("\u029c\u1d07\u1d04\u1d0b") == "heck"


def test_stacked_combining_marks_are_cut_to_a_few_per_letter() -> None:
    # Given a letter under 900 acute accents ("zalgo": it draws over other lines)
    typed = "a" + "\u0301" * 900 + "b" + "\u0489" * 20
    # Then clean keeps the first MAX_MARKS_PER_LETTER of each run
    assert (
        clean(typed)
        == "a" + "\u0301" * MAX_MARKS_PER_LETTER + "b" + "\u0489" * MAX_MARKS_PER_LETTER
    )


def test_joiners_between_marks_do_not_restart_the_count() -> None:
    # The reviewer's bypass: 100 runs of 8 accents, each ended by a ZWJ
    typed = "e" + ("\u0301" * 8 + ZWJ) * 100
    kept = clean(typed)
    assert kept.count("\u0301") == MAX_MARKS_PER_LETTER
    assert kept.startswith("e" + "\u0301" * 8 + ZWJ + "\u0301" * 2 + ZWJ)


def test_a_stack_as_deep_as_tibetans_deepest_is_kept_whole() -> None:
    # Ten subjoined letters under one: the Kalachakra monogram's depth
    subjoined = [*range(0x0F90, 0x0F98), 0x0F99, 0x0F9A]  # U+0F98 is unassigned
    stack = "\u0f67" + "".join(map(chr, subjoined))
    assert MAX_MARKS_PER_LETTER == 10
    assert clean(stack) == stack
    assert clean(stack + "\u0fb1") == stack


@pytest.mark.parametrize(
    "text",
    [
        "Vi\u1ec7t Nam",  # Vietnamese: precomposed
        "Vie\u0323\u0302t",  # Vietnamese decomposed: two marks on a letter
        "\u05d1\u05bc\u05b0\u0591\u05c3",  # Hebrew points and cantillation
        "\u0f66\u0f90\u0fb1\u0f7c\u0f7e",  # Tibetan stack
        "1\ufe0f\u20e3",  # keycap emoji: a variation selector and an enclosing mark
    ],
)
def test_what_scripts_and_emoji_stack_is_kept(text: str) -> None:
    assert clean(text) == text


@pytest.mark.parametrize(
    ("text", "blank"),
    [
        ("", True),
        ("\u2800", True),  # BRAILLE PATTERN BLANK: a symbol that renders empty
        ("\u00a0\u3000\u2003 \t\n", True),  # no-break, ideographic, em spaces
        ("\u2800a", False),
        ("\u2801", False),  # a braille dot shows
        (ZWJ, True),  # format characters and marks alone show nothing
        ("\ufe0f\ufe0f", True),
        ("\u2800" + ZWJ, True),
        ("\u034f", True),  # COMBINING GRAPHEME JOINER
        ("\u180b", True),  # MONGOLIAN FREE VARIATION SELECTOR ONE
        ("\U0001f468" + ZWJ + "\U0001f469", False),
        ("a" + ZWJ, False),
        (".", False),
    ],
)
def test_is_blank_is_true_for_text_that_shows_nothing(text: str, blank: bool) -> None:
    assert is_blank(text) is blank
