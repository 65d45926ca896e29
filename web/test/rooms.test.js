import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError } from "../src/api.js";
import { membersLine, mergeMessages, parseChatMessage, RoomsClient, senderLabel, validRoomName } from "../src/rooms.js";

const ID = (n) => `01JBZ${String(n).padStart(21, "0")}`;
const msg = (n, extra = {}) => ({ v: 1, id: ID(n), type: "chat.message", room: "lobby", sender: "alice", text: `m${n}`, ts: "", ...extra });

test("chat envelopes parse from JSON text, bytes and objects; anything else is dropped", () => {
  assert.deepEqual(parseChatMessage(JSON.stringify(msg(1))), msg(1));
  assert.deepEqual(parseChatMessage(new TextEncoder().encode(JSON.stringify(msg(2)))), msg(2));
  assert.deepEqual(parseChatMessage(msg(3)), msg(3));
  for (const bad of [null, "x", "{", msg(1, { type: "notification" }), msg(1, { v: 2 }), msg(1, { id: "nope" }), msg(1, { sender: 5 }), msg(1, { text: undefined })]) {
    assert.equal(parseChatMessage(bad), null);
  }
});

test("history and live copies merge by id, oldest first, capped", () => {
  const merged = mergeMessages([msg(2), msg(1)], [msg(3), msg(2)]);
  assert.deepEqual(merged.map((m) => m.text), ["m1", "m2", "m3"]);
  assert.deepEqual(mergeMessages(merged, [msg(4)], 2).map((m) => m.text), ["m3", "m4"]);
});

test("room names follow the contract; senders show as you or a short id", () => {
  assert.ok(validRoomName("lobby_1-x"));
  for (const bad of ["", "a/b", "+", "#", "x".repeat(65), 5]) assert.equal(validRoomName(bad), false);
  assert.equal(senderLabel("abc", "abc"), "you");
  assert.equal(senderLabel("1234567890abcdef", "me"), "12345678…");
  assert.equal(senderLabel("bob", "me"), "bob");
});

function fakeApi(answers) {
  const calls = [];
  return {
    calls,
    api: {
      baseUrl: "https://api.test",
      auth: { idToken: async (force) => (force ? "fresh" : "id-token") },
      fetch: async (url, init) => {
        calls.push({ url, init });
        const [status, body] = answers.shift();
        return { status, ok: status < 400, text: async () => JSON.stringify(body) };
      },
    },
  };
}

test("listing follows next until the last page", async () => {
  const { api, calls } = fakeApi([
    [200, { rooms: [{ room: "b" }], next: "tok" }],
    [200, { rooms: [{ room: "a" }], next: null }],
  ]);
  const rooms = await new RoomsClient(api).list();
  assert.deepEqual(rooms.map((r) => r.room), ["a", "b"]);
  assert.match(calls[1].url, /next=tok/);
  assert.equal(calls[0].init.headers.Authorization, "id-token");
});

test("a 401 is retried once with a refreshed token; a 403 becomes an ApiError", async () => {
  const { api, calls } = fakeApi([
    [401, { error: "unauthorized", message: "expired" }],
    [403, { error: "forbidden", message: "room secret is private and you are not a member" }],
  ]);
  await assert.rejects(new RoomsClient(api).token("secret"), (err) => err instanceof ApiError && err.status === 403 && /private/.test(err.message));
  assert.equal(calls[1].init.headers.Authorization, "fresh");
  assert.match(calls[0].url, /\/token\?rooms=secret$/);
});

test("create and add member POST JSON; history keeps only chat envelopes", async () => {
  const { api, calls } = fakeApi([
    [201, { room: "x" }],
    [200, { room: "x" }],
    [200, { messages: [msg(1), { v: 1 }], next: null }],
  ]);
  const client = new RoomsClient(api);
  await client.create("x", true);
  await client.addMember("x", "bob");
  assert.deepEqual(JSON.parse(calls[0].init.body), { room: "x", private: true });
  assert.equal(calls[1].url, "https://api.test/chats/x/members");
  assert.deepEqual(JSON.parse(calls[1].init.body), { user: "bob" });
  assert.deepEqual((await client.history("x")).map((m) => m.id), [ID(1)]);
});

test("the members line says how many members are online, from GET /presence", async () => {
  assert.equal(membersLine(["a", "b", "c"], null), "Members: 3");
  assert.equal(membersLine(["a", "b", "c"], { a: { online: true }, b: { online: false } }), "Members: 3, 1 online");
  const { api, calls } = fakeApi([[200, { presence: { a: { online: true, connections: 2, lastSeen: 1 } } }]]);
  const presence = await new RoomsClient(api).presence(["a", "b"]);
  assert.equal(presence.a.online, true);
  assert.equal(calls[0].url, "https://api.test/presence?users=a%2Cb");
});
