import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import { ApiError } from "../src/api.js";
import {
  JoinedRoom,
  membersLine,
  mergeMessages,
  newCid,
  parseChatMessage,
  PendingLine,
  RoomsClient,
  RoomsView,
  senderLabel,
  validRoomName,
} from "../src/rooms.js";

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

// A QoS 1 line whose PUBACK is lost is sent again and used to show twice
// (zulip/zulip#31219, mattermost/mattermost#8471): each line carries a cid,
// the same one when it is sent again, and the moderator keeps one copy.

function fakeRoom(failures = 0) {
  const published = [];
  const connect = () => ({
    on() {},
    subscribe() {},
    publish(topic, payload, options, callback) {
      published.push({ topic, payload: JSON.parse(payload), options });
      callback(failures-- > 0 ? new Error("connection closed") : undefined);
    },
    end() {},
  });
  const token = { url: "wss://x/mqtt", clientIdPrefix: "alice.", channels: { lobby: { topic: "a/s/chat/lobby", inputTopic: "a/s/chat/lobby/input" } } };
  const joined = new JoinedRoom({ room: "lobby", token, connect, onMessage() {}, onState() {} });
  return { joined, published };
}

test("each line is published with a fresh cid, QoS 1, on the room's input topic", async () => {
  const { joined, published } = fakeRoom();
  const view = { ui: { text: { value: "hello" } }, joined, pending: new PendingLine(), setError() {} };
  await RoomsView.prototype.sendTyped.call(view);
  view.ui.text.value = "hello"; // the same words again, on purpose: a new line
  await RoomsView.prototype.sendTyped.call(view);
  assert.equal(published.length, 2);
  for (const p of published) {
    assert.equal(p.topic, "a/s/chat/lobby/input");
    assert.equal(p.options.qos, 1);
    assert.equal(p.payload.text, "hello");
    assert.match(p.payload.cid, /^[A-Za-z0-9_-]{16,64}$/);
  }
  assert.notEqual(published[0].payload.cid, published[1].payload.cid);
});

test("a line sent again after 'Not sent' keeps its cid; the next line gets a new one", async () => {
  const { joined, published } = fakeRoom(1);
  const errors = [];
  const view = { ui: { text: { value: "did it arrive?" } }, joined, pending: new PendingLine(), setError: (e) => errors.push(e) };
  await RoomsView.prototype.sendTyped.call(view); // the connection dropped before the PUBACK
  assert.match(errors[0], /Not sent/);
  assert.equal(view.ui.text.value, "did it arrive?");
  await RoomsView.prototype.sendTyped.call(view); // Send again
  view.ui.text.value = "next";
  await RoomsView.prototype.sendTyped.call(view);
  const cids = published.map((p) => p.payload.cid);
  assert.equal(cids[0], cids[1]);
  assert.notEqual(cids[2], cids[0]);
  assert.equal(view.ui.text.value, "");
});

test("cids are 22 base64url characters, each fresh; the envelope's cid is kept when valid", () => {
  const cids = new Set(Array.from({ length: 500 }, () => newCid()));
  assert.equal(cids.size, 500);
  for (const cid of cids) assert.match(cid, /^[A-Za-z0-9_-]{22}$/);
  const cid = newCid();
  assert.equal(parseChatMessage(msg(1, { cid })).cid, cid);
  assert.equal("cid" in parseChatMessage(msg(1, { cid: "bad cid\n" })), false);
  assert.equal("cid" in parseChatMessage(msg(1)), false);
});

// A shared computer: alice signs out while her room list is on its way, then
// bob signs in in the same tab. Her answer must not fill his Rooms section.

function fakeDoc() {
  const made = new Map();
  const element = () => ({
    hidden: false,
    textContent: "",
    value: "",
    checked: false,
    disabled: false,
    dataset: {},
    children: [],
    addEventListener() {},
    setAttribute() {},
    append(...items) {
      this.children.push(...items);
    },
    replaceChildren(...items) {
      this.children = items;
    },
  });
  return {
    getElementById: (id) => {
      if (!made.has(id)) made.set(id, element());
      return made.get(id);
    },
    createElement: () => element(),
  };
}

test("a room list answered after sign-out is not shown to whoever signs in next", async () => {
  const answers = [];
  const api = {
    baseUrl: "https://api.test",
    auth: { idToken: async () => "id-token" },
    fetch: () => new Promise((resolve) => answers.push(resolve)),
  };
  const doc = fakeDoc();
  let self = "alice";
  const view = new RoomsView({ api, connect: () => assert.fail("no connection"), self: () => self, doc });
  const reply = (which, rooms) => answers[which]({ status: 200, ok: true, text: async () => JSON.stringify({ rooms, next: null }) });
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  view.show(); // alice's list is on its way
  await settle();
  view.hide(); // she signs out
  self = "bob";
  view.show(); // bob signs in: his list is on its way too
  await settle();
  reply(1, [{ room: "bobs-room", private: false, owner: "bob" }]);
  await settle();
  reply(0, [{ room: "alices-secret", private: true, owner: "alice" }]); // hers answers last
  await settle();

  const list = doc.getElementById("rooms-list").children;
  assert.deepEqual(view.rooms.map((r) => r.room), ["bobs-room"]);
  assert.equal(list.length, 1);
  assert.equal(list[0].children[0].textContent, "bobs-room");
});

test("a chat line's text is shown without bidi overrides or control characters; a sender that is no user id is dropped", () => {
  const m = parseChatMessage(msg(1, { text: "look \u202egnp.exe\u202c\x07" }));
  assert.equal(m?.text, "look gnp.exe");
  // The moderator takes the sender from the client id (the user-id alphabet):
  // anything else did not come from it, and stripped it could pass for "bob".
  for (const sender of ["bob\u202e", "bob ", "", "x".repeat(65), "you/2"]) assert.equal(parseChatMessage(msg(2, { sender })), null);
});

// The room's connection used to stay down after any drop (an emulator or
// network blip): "Disconnected ... Join again to reconnect", while the
// notification connection beside it came back by itself.

test("a room whose connection drops rejoins by itself with backoff: fresh token, history merged, messages kept", async () => {
  const doc = fakeDoc();
  const tokens = [];
  let tokenAnswer = () => [200, { url: `ws://emu/mqtt?n=${tokens.length}`, clientIdPrefix: "alice.", channels: { lobby: { topic: "a/s/chat/lobby", inputTopic: "a/s/chat/lobby/input" } } }];
  const api = {
    baseUrl: "https://api.test",
    auth: { idToken: async () => "id-token" },
    fetch: async (url) => {
      let answer;
      if (url.includes("/token")) {
        tokens.push(url);
        answer = tokenAnswer();
      } else if (url.includes("/messages")) answer = [200, { messages: [msg(1)], next: null }];
      else answer = [200, { rooms: [], next: null }];
      return { status: answer[0], ok: answer[0] < 400, text: async () => JSON.stringify(answer[1]) };
    },
  };
  const clients = [];
  const connect = (url) => {
    const client = new EventEmitter();
    client.url = url;
    client.subscribe = (topic, options, callback) => queueMicrotask(() => callback(null));
    client.publish = () => {};
    client.end = () => {
      client.ended = true;
    };
    clients.push(client);
    return client;
  };
  const timers = [];
  const view = new RoomsView({
    api,
    connect,
    self: () => "alice",
    doc,
    timers: { set: (fn, ms) => timers.push({ fn, ms }), clear: () => {} },
    random: () => 1,
  });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  const state = doc.getElementById("room-state");

  await view.join("lobby");
  clients[0].emit("connect");
  await settle();
  assert.equal(state.dataset.state, "live");
  clients[0].emit("message", "a/s/chat/lobby", JSON.stringify(msg(2)));
  assert.deepEqual(view.shown.map((m) => m.id), [ID(1), ID(2)]);

  // When the connection drops, and the token API fails once meanwhile
  clients[0].emit("close");
  assert.equal(state.dataset.state, "reconnecting");
  assert.equal(doc.getElementById("room-send").disabled, true);
  assert.equal(timers.length, 1);
  tokenAnswer = () => [503, { error: "unavailable", message: "try later" }];
  timers.shift().fn();
  await settle();
  assert.equal(state.dataset.state, "reconnecting");
  assert.equal(timers.length, 1, "a failed rejoin is tried again");
  assert.ok(timers[0].ms > 1000, "with a longer delay");
  tokenAnswer = () => [200, { url: "ws://emu/mqtt?again", clientIdPrefix: "alice.", channels: { lobby: { topic: "a/s/chat/lobby", inputTopic: "a/s/chat/lobby/input" } } }];
  timers.shift().fn();
  await settle();

  // Then it is live again on a new connection, with what it showed kept
  assert.equal(clients.length, 2);
  assert.equal(clients[1].url, "ws://emu/mqtt?again");
  clients[1].emit("connect");
  await settle();
  assert.equal(state.dataset.state, "live");
  assert.equal(doc.getElementById("room-send").disabled, false);
  assert.deepEqual(view.shown.map((m) => m.id), [ID(1), ID(2)]);

  // And leaving (or signing out) stops it for good
  view.leave();
  clients[1].emit("close");
  assert.equal(timers.length, 0);
});

test("a room that refuses the rejoin (no longer a member) stops and says so", async () => {
  const doc = fakeDoc();
  let refuse = false;
  const api = {
    baseUrl: "https://api.test",
    auth: { idToken: async () => "id-token" },
    fetch: async (url) => {
      const answer = url.includes("/token")
        ? refuse
          ? [403, { error: "forbidden", message: "not a member" }]
          : [200, { url: "ws://emu/mqtt", clientIdPrefix: "alice.", channels: { lobby: { topic: "a/s/chat/lobby", inputTopic: "a/s/chat/lobby/input" } } }]
        : [200, { messages: [], rooms: [], next: null }];
      return { status: answer[0], ok: answer[0] < 400, text: async () => JSON.stringify(answer[1]) };
    },
  };
  const clients = [];
  const connect = () => {
    const client = new EventEmitter();
    client.subscribe = (topic, options, callback) => queueMicrotask(() => callback(null));
    client.end = () => {};
    clients.push(client);
    return client;
  };
  const timers = [];
  const view = new RoomsView({ api, connect, self: () => "alice", doc, timers: { set: (fn, ms) => timers.push({ fn, ms }), clear: () => {} } });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  await view.join("lobby");
  clients[0].emit("connect");
  await settle();
  refuse = true;
  clients[0].emit("close");
  timers.shift().fn();
  await settle();
  assert.equal(timers.length, 0);
  assert.match(doc.getElementById("rooms-error").textContent, /not a member of lobby/);
});

test("sign-out leaves none of the room's lines in the page, not even hidden", async () => {
  const doc = fakeDoc();
  const api = {
    baseUrl: "https://api.test",
    auth: { idToken: async () => "id-token" },
    fetch: async (url) => {
      const body = url.includes("/token")
        ? { url: "ws://emu/mqtt", clientIdPrefix: "alice.", channels: { lobby: { topic: "a/s/chat/lobby", inputTopic: "a/s/chat/lobby/input" } } }
        : { messages: [], rooms: [], next: null };
      return { status: 200, ok: true, text: async () => JSON.stringify(body) };
    },
  };
  const clients = [];
  const connect = () => {
    const client = new EventEmitter();
    client.subscribe = (topic, options, callback) => queueMicrotask(() => callback(null));
    client.end = () => {};
    clients.push(client);
    return client;
  };
  const view = new RoomsView({ api, connect, self: () => "alice", doc });
  await view.join("lobby");
  clients[0].emit("connect");
  clients[0].emit("message", "a/s/chat/lobby", JSON.stringify(msg(1, { text: "alice's secret plan" })));
  assert.equal(doc.getElementById("room-messages").children.length, 1);
  view.hide();
  assert.equal(doc.getElementById("room-messages").children.length, 0);
  assert.equal(doc.getElementById("room-title").textContent, "");
  assert.deepEqual(view.shown, []);
});

test("a room list that failed (API down at load) is read again once the page is live, and the error goes", async () => {
  const doc = fakeDoc();
  let down = true;
  const api = {
    baseUrl: "https://api.test",
    auth: { idToken: async () => "id-token" },
    fetch: async () => {
      if (down) throw new TypeError("Failed to fetch");
      return { status: 200, ok: true, text: async () => JSON.stringify({ rooms: [{ room: "lobby", private: false, owner: "bob" }], next: null }) };
    },
  };
  const view = new RoomsView({ api, connect: () => assert.fail("no connection"), self: () => "alice", doc });
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  view.show();
  await settle();
  const error = doc.getElementById("rooms-error");
  assert.match(error.textContent, /Could not list rooms/);
  down = false;
  view.live(); // the notification connection is live: the API answers again
  await settle();
  assert.deepEqual(view.rooms.map((r) => r.room), ["lobby"]);
  assert.equal(error.textContent, "");
  assert.equal(error.hidden, true);
});
