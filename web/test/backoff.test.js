import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay } from "../src/backoff.js";

test("the ceiling doubles per attempt and stops at the cap", () => {
  const top = () => 0.999999;
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, { baseMs: 1000, capMs: 30000, random: top }));
  assert.deepEqual(ceilings, [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
});

test("full jitter: anywhere from the floor to the ceiling", () => {
  assert.equal(backoffDelay(3, { random: () => 0 }), 100);
  assert.equal(backoffDelay(3, { random: () => 0.5, minMs: 0 }), 4000);
  for (let i = 0; i < 200; i += 1) {
    const delay = backoffDelay(4);
    assert.ok(delay >= 100 && delay < 16000, String(delay));
  }
});
