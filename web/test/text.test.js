import assert from "node:assert/strict";
import { test } from "node:test";

import { clampText, plainText } from "../src/text.js";

test("short text is left as it is", () => {
  assert.deepEqual(clampText("Your turn."), { text: "Your turn.", clamped: false });
  assert.deepEqual(clampText("a".repeat(600)), { text: "a".repeat(600), clamped: false });
});

test("a 130 KB body is cut to the character limit, with an ellipsis", () => {
  const body = "x".repeat(130 * 1024);
  const { text, clamped } = clampText(body, { maxChars: 600 });
  assert.equal(clamped, true);
  assert.equal(text, `${"x".repeat(600)}…`);
});

test("many short lines are cut at the line limit", () => {
  const body = Array.from({ length: 50 }, (_, i) => `line ${i}`).join("\n");
  const { text, clamped } = clampText(body, { maxLines: 3 });
  assert.equal(clamped, true);
  assert.equal(text, "line 0\nline 1\nline 2…");
});

test("an emoji is never split in half", () => {
  const body = `${"a".repeat(9)}😀${"b".repeat(20)}`;
  const { text } = clampText(body, { maxChars: 10 });
  assert.equal(text, `${"a".repeat(9)}…`);
});

// The SDK's display policy (client/iotnotify/display_text.py plain_text):
// a sender's U+202E RIGHT-TO-LEFT OVERRIDE showed "pay exe.live done" for
// "pay \u202eevil.exe\u202c done" in the page's list, toast and OS pop-up.

test("plainText removes bidi formatting and control characters, but tab and newline", () => {
  assert.equal(plainText("pay \u202eevil.exe\u202c done"), "pay evil.exe done");
  const bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069";
  assert.equal(plainText(`a${bidi}b`), "ab");
  const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("") + "\x7f\x80\x9b\x9f";
  assert.equal(plainText(`x${controls}y`), "x\t\ny");
});

test("plainText keeps right-to-left text, joiners, variation selectors and emoji", () => {
  for (const text of ["\u05e9\u05dc\u05d5\u05dd", "👨\u200d👩\u200d👧", "\u2764\ufe0f", "می\u200cخواهم", "🏴\udb40\udc67\udb40\udc62\udb40\udc65\udb40\udc6e\udb40\udc67\udb40\udc7f"]) {
    assert.equal(plainText(text), text);
  }
});
