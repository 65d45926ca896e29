import assert from "node:assert/strict";
import { test } from "node:test";

import { ResumeWatch } from "../src/resume.js";

function harness(options = {}) {
  let clock = 1_000_000;
  const pending = [];
  const reasons = [];
  const watch = new ResumeWatch({
    onResume: (reason) => reasons.push(reason),
    now: () => clock,
    timers: { set: (fn, ms) => (pending.push({ fn, ms }), pending.at(-1)), clear: (h) => pending.splice(pending.indexOf(h), 1) },
    ...options,
  });
  /** Lets `ms` pass, then fires the tick (late if `ms` is more than its period). */
  const tickAfter = (ms) => {
    clock += ms;
    const handle = pending.shift();
    handle.fn();
  };
  return { watch, reasons, tickAfter, advance: (ms) => (clock += ms), pending };
}

test("ticks on time are not a resume", () => {
  const h = harness();
  h.watch.start();
  for (let i = 0; i < 20; i += 1) h.tickAfter(5000);
  h.tickAfter(5000 + 15_000); // a busy main thread
  assert.deepEqual(h.reasons, []);
  assert.equal(h.pending.length, 1, "one timer at a time");
});

test("a tick far later than planned (the machine slept) is a resume", () => {
  const h = harness();
  h.watch.start();
  h.tickAfter(5000);
  h.tickAfter(10 * 60_000);
  assert.equal(h.reasons.length, 1);
  assert.match(h.reasons[0], /timers resumed 600 s apart/);
});

test("a hidden tab's throttled timers (once a minute) are not a resume, a longer gap is", () => {
  const h = harness();
  h.watch.start();
  h.watch.setHidden(true);
  h.tickAfter(60_000);
  h.tickAfter(61_000);
  assert.deepEqual(h.reasons, []);
  h.tickAfter(30 * 60_000);
  assert.equal(h.reasons.length, 1);
});

test("visible after a long hidden spell is a resume; after a short one it is not", () => {
  const h = harness();
  h.watch.setHidden(true);
  h.advance(10_000);
  h.watch.setHidden(false);
  assert.deepEqual(h.reasons, []);
  h.watch.setHidden(true);
  h.advance(45_000);
  h.watch.setHidden(false);
  assert.deepEqual(h.reasons, ["the tab was hidden for 45 s"]);
});

test("stop cancels the tick", () => {
  const h = harness();
  h.watch.start();
  h.watch.stop();
  assert.equal(h.pending.length, 0);
});
