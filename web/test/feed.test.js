import assert from "node:assert/strict";
import { test } from "node:test";

import { Feed, parsePayload, toEnvelope } from "../src/feed.js";

const ID = (n) => `01JBZ${String(n).padStart(21, "0")}`;
const note = (n, extra = {}) => ({ v: 1, id: ID(n), type: "notification", title: `t${n}`, body: "", data: {}, ts: "", ...extra });

test("live and catch-up copies of one notification merge into one entry", () => {
  const feed = new Feed();
  assert.deepEqual(feed.add([note(1)]).map((n) => n.id), [ID(1)]);
  // Catch-up after a reconnect returns the same id again plus one missed.
  assert.deepEqual(feed.add([note(1), note(2)]).map((n) => n.id), [ID(2)]);
  assert.equal(feed.list().length, 2);
});

test("new entries come back oldest first and the list is newest first", () => {
  const feed = new Feed();
  const fresh = feed.add([note(3), note(1), note(2)]);
  assert.deepEqual(fresh.map((n) => n.id), [ID(1), ID(2), ID(3)]);
  assert.deepEqual(feed.list().map((n) => n.id), [ID(3), ID(2), ID(1)]);
  assert.equal(feed.lastId, ID(3));
});

test("lastId never goes backwards when an older id arrives late", () => {
  const feed = new Feed();
  feed.add([note(5)]);
  feed.add([note(4)]);
  assert.equal(feed.lastId, ID(5));
});

test("anything that is not a v1 envelope with a ULID id is ignored", () => {
  const feed = new Feed();
  const fresh = feed.add([null, "x", { v: 2, id: ID(1), title: "a" }, { v: 1, id: "nope", title: "a" }, { v: 1, id: ID(1) }]);
  assert.deepEqual(fresh, []);
  assert.equal(feed.lastId, null);
});

test("mark as read and mark all", () => {
  const feed = new Feed({ readIds: [ID(1)] });
  feed.add([note(1), note(2), note(3)]);
  assert.equal(feed.unreadCount(), 2);
  assert.equal(feed.markRead(ID(2)), true);
  assert.equal(feed.markRead(ID(2)), false);
  assert.deepEqual(feed.unread().map((n) => n.id), [ID(3)]);
  assert.deepEqual(feed.markAllRead(), [ID(3)]);
  assert.equal(feed.unreadCount(), 0);
  assert.deepEqual(feed.readIdsToKeep(), [ID(1), ID(2), ID(3)]);
});

test("trimmed old entries do not come back as new", () => {
  const feed = new Feed({ maxItems: 2 });
  feed.add([note(1), note(2), note(3)]);
  assert.deepEqual(feed.list().map((n) => n.id), [ID(3), ID(2)]);
  assert.deepEqual(feed.add([note(1)]), []);
});

test("payloads parse from bytes and text; garbage is null", () => {
  const bytes = new TextEncoder().encode(JSON.stringify(note(7, { data: { game: "g1" } })));
  assert.equal(parsePayload(bytes)?.id, ID(7));
  assert.equal(parsePayload(JSON.stringify(note(8)))?.title, "t8");
  assert.equal(parsePayload("{"), null);
  assert.equal(toEnvelope({ v: 1, id: ID(9), title: "x", data: null })?.data && true, true);
});
