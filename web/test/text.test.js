import assert from "node:assert/strict";
import { test } from "node:test";

import { clampText } from "../src/text.js";

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
