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

test("idLowerBound is the smallest id of the millisecond the look-back before, as in the Python SDK", async () => {
  const { idLowerBound, CATCH_UP_LOOKBACK_MS } = await import("../src/feed.js");
  // Vectors from iotnotify.contract.id_lower_bound.
  assert.equal(idLowerBound("01M8MQ1N4KPXZMGCN0J7W6FEEC", 60_000), "01M8MPZTHK0000000000000000");
  assert.equal(idLowerBound("01M8MQ1N4KPXZMGCN0J7W6FEEC", 0), "01M8MQ1N4K0000000000000000");
  assert.equal(idLowerBound("000000000A0000000000000000", 60_000), "0".repeat(26));
  assert.equal(CATCH_UP_LOOKBACK_MS, 60_000);
  assert.throws(() => idLowerBound("nope", 1000), TypeError);
  assert.throws(() => idLowerBound("01M8MQ1N4KPXZMGCN0J7W6FEEC", -1), RangeError);
});

test("a reconnect's catch-up shows an older id that reached the inbox late, once, and nothing twice", async () => {
  const { fetchMissed } = await import("../src/api.js");
  // An inbox as GET /notifications serves it: ids greater than `since`, oldest first, paged.
  const inbox = [];
  const asked = [];
  const api = {
    async notifications(since, limit = 100) {
      asked.push(since);
      const newer = inbox.filter((n) => since === null || n.id > since).sort((a, b) => (a.id < b.id ? -1 : 1));
      const page = newer.slice(0, limit);
      return { notifications: page, next: newer.length > limit ? page[page.length - 1].id : null };
    },
  };
  const at = (ms, tail) => ({ v: 1, id: idAt(ms) + tail, type: "notification", title: tail, body: "", data: {}, ts: "" });
  const t0 = 1_764_000_000_000;
  const feed = new Feed();
  // Given the page showed two notifications live (both also in the inbox)
  const shown = [at(t0, "0000000000000001"), at(t0 + 5000, "0000000000000002")];
  inbox.push(...shown);
  assert.equal(feed.add(shown).length, 2);
  // and a fan-out whose id was taken 3 s before the newest reached the inbox while offline
  const fanOut = at(t0 + 2000, "00000000000000FF");
  inbox.push(fanOut);
  // When the page catches up after reconnecting, in pages of one
  const fresh = feed.add(await fetchMissed(api, feed.catchUpSince(), { limit: 1 }));
  // Then only the fan-out is new, and the catch-up asked from 60 s before the newest
  assert.deepEqual(fresh.map((n) => n.id), [fanOut.id]);
  assert.equal(asked[0], idAt(t0 + 5000 - 60_000) + "0".repeat(16));
  assert.equal(feed.list().length, 3);
  assert.equal(feed.unreadCount(), 3);
  // and a second reconnect adds nothing
  assert.deepEqual(feed.add(await fetchMissed(api, feed.catchUpSince())), []);
});

test("a broadcast's later id never moves where the catch-up looks back from", () => {
  const t0 = 1_764_000_000_000;
  const at = (ms, tail) => ({ v: 1, id: idAt(ms) + tail, type: "notification", title: tail, body: "", data: {}, ts: "" });
  const feed = new Feed();
  // Given an own notification, then a broadcast whose host's clock is 5 minutes ahead
  feed.add([at(t0, "0000000000000001")]);
  feed.add([at(t0 + 300_000, "0000000000000002")], { own: false });
  // Then both are shown, but the catch-up still looks back from the own one:
  // the broadcast is not in the inbox, and from it the window would skip the user's notes
  assert.equal(feed.list().length, 2);
  assert.equal(feed.lastId, idAt(t0 + 300_000) + "0000000000000002");
  assert.equal(feed.catchUpSince(), idAt(t0 - 60_000) + "0".repeat(16));
});

/** The 10 time characters of a ULID made at epoch millisecond `ms`. */
function idAt(ms) {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  let out = "";
  for (let i = 0; i < 10; i += 1) {
    out = alphabet[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

test("an own id made far ahead of the server's clock is shown but never becomes the catch-up point", () => {
  const t0 = 1_764_000_000_000;
  const at = (ms, tail) => ({ v: 1, id: idAt(ms) + tail, type: "notification", title: tail, body: "", data: {}, ts: "" });
  const feed = new Feed({ now: () => t0 });
  // Given an own notification, then one whose id was made a day ahead (a broken publisher clock)
  feed.add([at(t0, "0000000000000001")]);
  const future = at(t0 + 86_400_000, "0000000000000002");
  assert.deepEqual(feed.add([future]).map((n) => n.id), [future.id]);
  // Then it is shown, but the catch-up still looks back from the real newest id,
  // so what is sent while offline (ids below the future one) is still asked for
  assert.equal(feed.catchUpSince(), idAt(t0 - 60_000) + "0".repeat(16));
  // while an id a few minutes ahead (ordinary clock skew) still moves it
  feed.add([at(t0 + 240_000, "0000000000000003")]);
  assert.equal(feed.catchUpSince(), idAt(t0 + 240_000 - 60_000) + "0".repeat(16));
});

test("an envelope's title, body and type are what the page may show: no bidi overrides or control characters", () => {
  const note = toEnvelope({ v: 1, id: ID(9), title: "pay \u202eevil.exe\u202c done\x1b", body: "line\u2067 one\nline\ttwo\x00", type: "game\u202e.turn" });
  assert.equal(note?.title, "pay evil.exe done");
  assert.equal(note?.body, "line one\nline\ttwo");
  assert.equal(note?.type, "game.turn");
});
