import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import { Connection, Status } from "../src/connection.js";
import { Feed } from "../src/feed.js";

const ID = (n) => `01JBZ${String(n).padStart(21, "0")}`;
const envelope = (n) => ({ v: 1, id: ID(n), type: "notification", title: `t${n}`, body: "", data: {}, ts: "" });

class FakeClient extends EventEmitter {
  constructor(url, options) {
    super();
    this.url = url;
    this.options = options;
    this.ended = false;
    this.subscribed = null;
  }
  subscribe(topics, options, callback) {
    this.subscribed = { topics, options };
    queueMicrotask(() => callback(null, topics.map((topic) => ({ topic, qos: this.grant ?? 1 }))));
  }
  end() {
    this.ended = true;
  }
  deliver(note) {
    this.emit("message", "app/local/user/u/notifications", new TextEncoder().encode(JSON.stringify(note)));
  }
}

class FakeTimers {
  constructor() {
    this.pending = [];
  }
  set = (fn, ms) => {
    const handle = { fn, ms };
    this.pending.push(handle);
    return handle;
  };
  clear = (handle) => {
    this.pending = this.pending.filter((h) => h !== handle);
  };
  runNext() {
    const handle = this.pending.shift();
    assert.ok(handle, "a timer was scheduled");
    handle.fn();
    return handle.ms;
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function harness({ tokenFails = 0, inbox = [] } = {}) {
  const clients = [];
  const statuses = [];
  const feed = new Feed();
  const timers = new FakeTimers();
  let tokens = 0;
  let clock = 0;
  const catchUps = [];
  const connection = new Connection({
    fetchToken: async () => {
      tokens += 1;
      if (tokens <= tokenFails) throw new Error("API down");
      return { url: `ws://emu/mqtt?sig=${tokens}`, clientIdPrefix: "u.", topics: ["app/local/user/u/notifications", "app/local/broadcast"], keepalive: 600 };
    },
    connect: (url, options) => {
      const client = new FakeClient(url, options);
      clients.push(client);
      return client;
    },
    catchUp: async () => {
      catchUps.push(feed.lastId);
      feed.add(inbox.filter((n) => feed.lastId === null || n.id > feed.lastId));
    },
    onMessage: (note) => feed.add([note]),
    onStatus: (status) => statuses.push(status),
    random: () => 0.5,
    now: () => clock,
    timers,
    suffix: () => "web-1",
  });
  return { connection, clients, statuses, feed, timers, catchUps, tick: (ms) => (clock += ms), tokenCount: () => tokens };
}

test("connects with the token's URL as-is, its keepalive, protocol 4 and no built-in reconnect", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  const [client] = h.clients;
  assert.equal(client.url, "ws://emu/mqtt?sig=1");
  assert.deepEqual(
    { ...client.options, connectTimeout: undefined },
    { clientId: "u.web-1", protocolVersion: 4, keepalive: 600, reconnectPeriod: 0, clean: true, connectTimeout: undefined, resubscribe: false, subscribeBatchSize: 8 },
  );
  client.emit("connect");
  await flush();
  assert.deepEqual(client.subscribed, { topics: ["app/local/user/u/notifications", "app/local/broadcast"], options: { qos: 1 } });
  assert.deepEqual(h.statuses, [Status.CONNECTING, Status.LIVE]);
  assert.deepEqual(h.catchUps, [null]);
});

test("a drop reconnects with a fresh token, catches up from the last id, and nothing is doubled", async () => {
  const h = harness({ inbox: [envelope(1), envelope(2), envelope(3)] });
  h.connection.start();
  await flush();
  h.clients[0].emit("connect");
  await flush();
  assert.equal(h.feed.lastId, ID(3));
  h.clients[0].deliver(envelope(3)); // the live copy of something catch-up already had
  h.tick(60_000);
  h.clients[0].emit("close");
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.connection.status, Status.RECONNECTING);
  assert.equal(h.timers.runNext(), 500); // attempt 0 after a stable connection: up to 1 s
  await flush();
  assert.equal(h.tokenCount(), 2);
  assert.equal(h.clients[1].url, "ws://emu/mqtt?sig=2");
  h.clients[1].emit("connect");
  await flush();
  assert.deepEqual(h.catchUps, [null, ID(3)]);
  assert.deepEqual(h.feed.list().map((n) => n.id), [ID(3), ID(2), ID(1)]);
  assert.deepEqual(h.statuses, [Status.CONNECTING, Status.LIVE, Status.RECONNECTING, Status.LIVE]);
});

test("failed attempts back off exponentially and error+close count once", async () => {
  const h = harness({ tokenFails: 3 });
  h.connection.start();
  await flush();
  const delays = [h.timers.runNext()];
  await flush();
  delays.push(h.timers.runNext());
  await flush();
  delays.push(h.timers.runNext());
  await flush();
  assert.deepEqual(delays, [500, 1000, 2000]);
  const client = h.clients[0];
  client.emit("error", new Error("handshake 503"));
  client.emit("close");
  assert.equal(h.timers.pending.length, 1, "one retry, not two");
  assert.equal(h.timers.pending[0].ms, 4000);
});

test("a refused subscription is a failed attempt, not live", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  h.clients[0].grant = 128;
  h.clients[0].emit("connect");
  await flush();
  assert.equal(h.connection.status, Status.CONNECTING);
  assert.equal(h.timers.pending.length, 1);
});

test("an unauthorized token request stops and reports the session as over", async () => {
  let fatal = null;
  const h = harness();
  h.connection.options.fetchToken = async () => {
    throw Object.assign(new Error("expired"), { unauthorized: true });
  };
  h.connection.options.onFatal = (err) => (fatal = err);
  h.connection.start();
  await flush();
  assert.equal(fatal?.message, "expired");
  assert.equal(h.connection.status, Status.OFFLINE);
  assert.equal(h.timers.pending.length, 0);
});

test("offline pauses retries; online reconnects at once", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  h.clients[0].emit("connect");
  await flush();
  h.connection.setOnline(false);
  assert.equal(h.connection.status, Status.OFFLINE);
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.timers.pending.length, 0);
  h.connection.setOnline(true);
  await flush();
  assert.equal(h.clients.length, 2);
  assert.equal(h.connection.status, Status.RECONNECTING);
});

test("stop closes the client and ignores its late events", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  const client = h.clients[0];
  h.connection.stop();
  client.emit("connect");
  client.emit("close");
  await flush();
  assert.equal(client.ended, true);
  assert.equal(h.timers.pending.length, 0);
  assert.equal(h.connection.status, Status.OFFLINE);
});

test("an attempt that never answers is given up by the watchdog and retried", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  assert.equal(h.timers.pending.length, 1);
  assert.equal(h.timers.runNext(), 20000); // connectTimeout 15 s + 5 s grace
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.timers.pending.length, 1, "the retry");
  h.timers.runNext();
  await flush();
  assert.equal(h.clients.length, 2);
});
