import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";

import * as connectionModule from "../src/connection.js";
import { Connection, DEFAULT_KEEPALIVE_S, MAX_CONNECTION_MS, Status, keepaliveSeconds } from "../src/connection.js";
import { Feed } from "../src/feed.js";

const ID = (n) => `01JBZ${String(n).padStart(21, "0")}`;
const envelope = (n) => ({ v: 1, id: ID(n), type: "notification", title: `t${n}`, body: "", data: {}, ts: "" });

class FakeClient extends EventEmitter {
  constructor(url, options) {
    super();
    this.url = url;
    this.options = options;
    this.ended = false;
    this.subscribed = [];
    this.pings = 0;
    /** topic -> "refuse" (SUBACK 0x80, as mqtt.js 5 reports it) | "hold" (no answer yet); default: granted */
    this.answers = {};
    this.held = [];
  }
  subscribe(topic, options, callback) {
    assert.equal(typeof topic, "string", "one SUBSCRIBE per topic");
    this.subscribed.push({ topic, options });
    const answer = this.answers[topic] ?? (this.grant === 128 ? "refuse" : "grant");
    if (answer === "hold") {
      // mqtt.js fails outstanding SUBSCRIBEs when the connection closes
      this.held.push(() => callback(new Error("Connection closed")));
      return;
    }
    queueMicrotask(() => {
      this.emit("packetreceive", { cmd: "suback" });
      if (answer === "refuse") {
        callback(Object.assign(new Error("Subscribe error: Unspecified error"), { packet: { cmd: "suback", granted: [128] } }), [{ topic, qos: 128 }]);
      } else {
        callback(null, [{ topic, qos: 1 }]);
      }
    });
  }
  sendPing() {
    this.pings += 1;
  }
  connack() {
    this.emit("packetreceive", { cmd: "connack" });
    this.emit("connect");
  }
  /** The server closes the socket (after failing what is outstanding, as mqtt.js does). */
  serverClose() {
    for (const fail of this.held.splice(0)) fail();
    this.emit("close");
  }
  end() {
    this.ended = true;
  }
  deliver(note) {
    this.emit("packetreceive", { cmd: "publish" });
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
  /** Runs the pending timer of `ms` milliseconds (or the first one matching `ms(ms)`). */
  run(ms) {
    const match = typeof ms === "function" ? ms : (value) => value === ms;
    const handle = this.pending.find((h) => match(h.ms));
    assert.ok(handle, `a timer matching ${ms} is pending (have ${this.pending.map((h) => h.ms)})`);
    this.clear(handle);
    handle.fn();
    return handle.ms;
  }
  /** Pending timers other than the planned renewal (a day away). */
  retries() {
    return this.pending.filter((h) => h.ms < 3600_000);
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function harness({ tokenFails = 0, inbox = [], token = {} } = {}) {
  /** The token API: `down` fails every GET /token, `gate` holds answers until it resolves. */
  const api = { down: false, unauthorized: false, gate: null };
  /** For each GET /token: whether every connection opened so far had been closed when it was asked. */
  const askedWithOldClosed = [];
  const clients = [];
  const statuses = [];
  const refusals = [];
  const unreachable = [];
  const feed = new Feed();
  const timers = new FakeTimers();
  let tokens = 0;
  let clock = 0;
  const catchUps = [];
  const connection = new Connection({
    fetchToken: async () => {
      tokens += 1;
      const n = tokens;
      askedWithOldClosed.push(clients.every((c) => c.ended));
      if (api.gate) await api.gate;
      if (api.unauthorized) throw Object.assign(new Error("expired"), { unauthorized: true });
      if (n <= tokenFails || api.down) throw new Error("API down");
      return { url: `ws://emu/mqtt?sig=${n}`, clientIdPrefix: "u.", topics: ["app/local/user/u/notifications", "app/local/broadcast"], keepalive: 600, ...token };
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
    onRefused: (refused) => refusals.push(Object.fromEntries(refused)),
    onUnreachable: (url, failures) => unreachable.push({ url, failures }),
    random: () => 0.5,
    now: () => clock,
    timers,
    suffix: () => "web-1",
  });
  return {
    connection,
    clients,
    statuses,
    refusals,
    unreachable,
    feed,
    timers,
    catchUps,
    api,
    askedWithOldClosed,
    inbox,
    tick: (ms) => (clock += ms),
    clock: () => clock,
    tokenCount: () => tokens,
  };
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
  client.connack();
  await flush();
  assert.deepEqual(client.subscribed, [
    { topic: "app/local/user/u/notifications", options: { qos: 1 } },
    { topic: "app/local/broadcast", options: { qos: 1 } },
  ]);
  assert.deepEqual(h.statuses, [Status.CONNECTING, Status.LIVE]);
  assert.deepEqual(h.catchUps, [null]);
});

test("a drop reconnects with a fresh token, catches up from the last id, and nothing is doubled", async () => {
  const h = harness({ inbox: [envelope(1), envelope(2), envelope(3)] });
  h.connection.start();
  await flush();
  h.clients[0].connack();
  await flush();
  assert.equal(h.feed.lastId, ID(3));
  h.clients[0].deliver(envelope(3)); // the live copy of something catch-up already had
  h.tick(60_000);
  h.clients[0].emit("close");
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.connection.status, Status.RECONNECTING);
  assert.equal(h.timers.run(500), 500); // attempt 0 after a stable connection: up to 1 s
  await flush();
  assert.equal(h.tokenCount(), 2);
  assert.equal(h.clients[1].url, "ws://emu/mqtt?sig=2");
  h.clients[1].connack();
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
  h.clients[0].connack();
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
  client.connack();
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

// --- issue 12 item 3: a refused subscription ------------------------------------

const USER = "app/local/user/u/notifications";
const BROADCAST = "app/local/broadcast";

test("a SUBACK refusal keeps what was granted, catches up, names the topic and does not retry", async () => {
  const h = harness({ inbox: [envelope(1)] });
  h.connection.start();
  await flush();
  h.clients[0].answers[BROADCAST] = "refuse";
  h.clients[0].connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.catchUps, [null], "caught up once");
  assert.deepEqual(h.feed.list().map((n) => n.id), [ID(1)]);
  assert.deepEqual(h.refusals, [{ [BROADCAST]: "the server refused the subscription" }]);
  assert.match(h.connection.detail, /not receiving app\/local\/broadcast/);
  assert.equal(h.timers.retries().length, 0, "no retry is scheduled");
  assert.equal(h.clients[0].ended, false, "the connection stays");
  h.clients[0].deliver(envelope(2));
  assert.equal(h.feed.lastId, ID(2));

  // a later reconnect (for another reason) does not ask for the refused topic again
  h.tick(60_000);
  h.clients[0].serverClose();
  h.timers.run((ms) => ms < 3600_000);
  await flush();
  h.clients[1].connack();
  await flush();
  assert.deepEqual(h.clients[1].subscribed.map((s) => s.topic), [USER]);
  assert.equal(h.connection.status, Status.LIVE);
});

test("AWS's 3.1.1 answer (closing on the SUBSCRIBE) twice in a row drops that topic, then the rest is live", async () => {
  const h = harness({ inbox: [envelope(1)] });
  h.connection.start();
  await flush();
  for (const n of [0, 1]) {
    const client = h.clients[n];
    client.answers[BROADCAST] = "hold";
    client.connack();
    await flush();
    assert.notEqual(h.connection.status, Status.LIVE);
    client.serverClose(); // the server closes instead of answering
    assert.equal(h.timers.retries().length, 1);
    h.timers.run((ms) => ms < 3600_000);
    await flush();
  }
  assert.deepEqual(h.refusals, [{ [BROADCAST]: "the server closed the connection on its SUBSCRIBE" }]);
  const third = h.clients[2];
  third.connack();
  await flush();
  assert.deepEqual(third.subscribed.map((s) => s.topic), [USER], "only what may be subscribed");
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.feed.list().map((n) => n.id), [ID(1)], "caught up");
  assert.equal(h.timers.retries().length, 0);
});

test("one close during a SUBSCRIBE (a blip) does not drop the topic", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  h.clients[0].answers[BROADCAST] = "hold";
  h.clients[0].connack();
  await flush();
  h.clients[0].serverClose();
  h.timers.run((ms) => ms < 3600_000);
  await flush();
  h.clients[1].connack();
  await flush();
  assert.deepEqual(h.clients[1].subscribed.map((s) => s.topic), [USER, BROADCAST]);
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.refusals, []);
});

test("when every topic is refused the page stops retrying and says so", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  h.clients[0].grant = 128;
  h.clients[0].connack();
  await flush();
  assert.equal(h.connection.status, Status.OFFLINE);
  assert.match(h.connection.detail, /refused every topic: app\/local\/user\/u\/notifications, app\/local\/broadcast/);
  assert.equal(h.timers.pending.length, 0);
  assert.equal(h.clients[0].ended, true);
});

// --- issue 12 item 4: a dead but open socket -----------------------------------

test("check() pings a live connection and reconnects at once when nothing answers", async () => {
  const h = harness({ inbox: [envelope(1)] });
  h.connection.start();
  await flush();
  h.clients[0].connack();
  await flush();
  h.connection.check("the tab came back");
  assert.equal(h.clients[0].pings, 1);
  h.connection.check("online"); // a second reason while waiting: one ping only
  assert.equal(h.clients[0].pings, 1);
  assert.equal(h.timers.run(5000), 5000); // the deadline passes in silence
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.connection.status, Status.RECONNECTING);
  assert.match(h.connection.detail, /no answer to a ping within 5 s after the tab came back/);
  h.timers.run((ms) => ms < 3600_000);
  await flush();
  assert.equal(h.tokenCount(), 2, "a fresh token");
  h.clients[1].connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.catchUps, [null, ID(1)], "and a catch-up");
});

test("check() on a healthy connection changes nothing", async () => {
  const h = harness();
  h.connection.start();
  await flush();
  h.clients[0].connack();
  await flush();
  h.connection.check("resumed");
  h.clients[0].emit("packetreceive", { cmd: "pingresp" });
  assert.equal(h.timers.retries().length, 0, "the deadline is cancelled");
  assert.equal(h.clients[0].ended, false);
  assert.equal(h.connection.status, Status.LIVE);
});

test("an `online` event while online checks the connection; while waiting to retry it retries now", async () => {
  const h = harness({ tokenFails: 1 });
  h.connection.start();
  await flush();
  assert.equal(h.timers.retries().length, 1, "waiting out the backoff");
  h.connection.setOnline(true);
  await flush();
  assert.equal(h.clients.length, 1, "tried at once");
  assert.equal(h.timers.retries().length, 1, "(its connect watchdog)");
  h.clients[0].connack();
  await flush();
  h.connection.setOnline(true);
  assert.equal(h.clients[0].pings, 1);
});

// --- issue 12 item 5: keepalive and the 24 h limit ------------------------------

test("the keepalive is the vended one within AWS's range, else a default below common idle timeouts", () => {
  assert.equal(keepaliveSeconds(90), 90);
  assert.equal(keepaliveSeconds(undefined), DEFAULT_KEEPALIVE_S);
  assert.ok(DEFAULT_KEEPALIVE_S < 120, "below a 120 s proxy idle timeout");
  assert.equal(keepaliveSeconds(5), 30);
  assert.equal(keepaliveSeconds(0), 1200);
  assert.equal(keepaliveSeconds(5000), 1200);
  assert.equal(keepaliveSeconds("600"), DEFAULT_KEEPALIVE_S);
});

test("the connect options carry the default keepalive when the token has none", async () => {
  const h = harness({ token: { keepalive: undefined } });
  h.connection.start();
  await flush();
  assert.equal(h.clients[0].options.keepalive, DEFAULT_KEEPALIVE_S);
});

test("a live connection is renewed before AWS's 24 h WebSocket limit, with a fresh token and a catch-up", async () => {
  const h = harness({ inbox: [envelope(1)] });
  h.connection.start();
  await flush();
  h.clients[0].connack();
  await flush();
  const planned = h.timers.pending.filter((t) => t.ms >= 3600_000);
  assert.equal(planned.length, 1);
  assert.ok(planned[0].ms <= MAX_CONNECTION_MS && planned[0].ms >= MAX_CONNECTION_MS * 0.95, planned[0].ms);
  assert.ok(planned[0].ms < 24 * 3600 * 1000);
  h.timers.run(planned[0].ms);
  await flush();
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.tokenCount(), 2);
  h.clients[1].connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.catchUps, [null, ID(1)]);
});

// --- the planned renewal, like the SDK (client/iotnotify/subscriber.py) ----------

const HOUR_MS = 3600 * 1000;
/** Connects `h` and makes it live (subscribed and caught up). */
async function live(h) {
  h.connection.start();
  await flush();
  h.clients.at(-1).connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
}
/** The planned renewal's timer (the only one hours away). */
function plannedTimer(h) {
  const planned = h.timers.pending.filter((t) => t.ms >= HOUR_MS);
  assert.equal(planned.length, 1, `one planned renewal (have ${h.timers.pending.map((t) => t.ms)})`);
  return planned[0];
}
/** Lets `timer`'s time pass on the clock, then runs it. */
async function fire(h, timer) {
  h.tick(timer.ms);
  h.timers.run((ms) => ms === timer.ms);
  await flush();
}

test("tabs that connected together plan their renewals at different ages, in subscriber.py's window (pulsar-client-go#556, coder/coder#24096)", async () => {
  // Given six tabs whose connections went live at the same moment (after an
  // outage of the endpoint, say), each drawing with the real Math.random
  const fleet = Array.from({ length: 6 }, () => harness());
  for (const h of fleet) h.connection.options.random = Math.random;
  for (const h of fleet) await live(h);
  // Then each plans its renewal at its own age, within the last 5 % of 23.5 h
  // (the SDK's DEFAULT_MAX_CONNECTION_AGE and _PLANNED_AGE_JITTER)...
  const ages = fleet.map((h) => h.connection.plannedAgeMs);
  for (const age of ages) assert.ok(age >= 23.5 * HOUR_MS * 0.95 && age <= 23.5 * HOUR_MS, `${age / HOUR_MS} h`);
  assert.equal(new Set(ages).size, ages.length, `distinct ages: ${ages}`);
  // ...and its timer is set for that age
  assert.deepEqual(fleet.map((h) => plannedTimer(h).ms), ages);
});

test("the renewal age is drawn again for every connection, down to 95 % of 23.5 h", async () => {
  const h = harness();
  const draws = [0.999, 0.1];
  h.connection.options.random = () => draws.shift() ?? 0.5;
  await live(h);
  const first = h.connection.plannedAgeMs;
  assert.ok(first < 22.4 * HOUR_MS && first >= 22.325 * HOUR_MS, `${first / HOUR_MS} h`);
  await fire(h, plannedTimer(h));
  h.clients[1].connack();
  await flush();
  const second = h.connection.plannedAgeMs;
  assert.ok(second > 23.3 * HOUR_MS && second <= 23.5 * HOUR_MS, `${second / HOUR_MS} h`);
  assert.equal(plannedTimer(h).ms, second);
});

test("the planned renewal fetches its token while the old connection keeps delivering, then replaces it: nothing lost or shown twice", async () => {
  const h = harness({ inbox: [envelope(1)] });
  await live(h);
  // Given the token API answers slowly at the planned renewal
  let answer;
  h.api.gate = new Promise((resolve) => (answer = resolve));
  await fire(h, plannedTimer(h));
  // Then the token is asked for while the old connection is open, and it stays live
  assert.equal(h.tokenCount(), 2);
  assert.deepEqual(h.askedWithOldClosed, [true, false]);
  assert.equal(h.clients.length, 1);
  assert.equal(h.clients[0].ended, false);
  assert.equal(h.connection.status, Status.LIVE);
  // and keeps delivering
  h.inbox.push(envelope(2));
  h.clients[0].deliver(envelope(2));
  assert.equal(h.feed.lastId, ID(2));
  // When the token arrives, the old connection is replaced by one with that token
  h.api.gate = null;
  answer();
  await flush();
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.clients.length, 2);
  assert.equal(h.clients[1].url, "ws://emu/mqtt?sig=2", "the token fetched ahead");
  assert.equal(h.tokenCount(), 2, "no second GET /token");
  // and what was sent while neither was subscribed is caught up, once
  h.inbox.push(envelope(3));
  h.clients[1].connack();
  await flush();
  h.clients[1].deliver(envelope(3)); // its live copy, late
  h.clients[1].deliver(envelope(2)); // a redelivery of one the old connection gave
  assert.deepEqual(h.catchUps, [null, ID(2)]);
  assert.deepEqual(h.feed.list().map((n) => n.id), [ID(3), ID(2), ID(1)]);
  assert.deepEqual(h.statuses, [Status.CONNECTING, Status.LIVE, Status.RECONNECTING, Status.LIVE]);
});

test("a token API outage at the planned renewal keeps the connection it has and retries with backoff (pysesame3#36)", async () => {
  const h = harness({ inbox: [envelope(1)] });
  await live(h);
  // Given the token API is down when the renewal is due
  h.api.down = true;
  await fire(h, plannedTimer(h));
  // Then the connection stays, live and delivering, and the fetch is retried with the reconnect backoff
  assert.equal(h.clients.length, 1);
  assert.equal(h.clients[0].ended, false);
  assert.equal(h.connection.status, Status.LIVE);
  h.clients[0].deliver(envelope(2));
  assert.equal(h.feed.lastId, ID(2));
  assert.deepEqual(h.timers.retries().map((t) => t.ms), [500]); // up to 1 s (random 0.5)
  await fire(h, h.timers.retries()[0]);
  assert.equal(h.tokenCount(), 3);
  assert.equal(h.clients[0].ended, false);
  assert.deepEqual(h.timers.retries().map((t) => t.ms), [1000]); // up to 2 s
  // When the API answers again, the renewal happens with that token
  h.api.down = false;
  await fire(h, h.timers.retries()[0]);
  assert.equal(h.tokenCount(), 4);
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.clients[1].url, "ws://emu/mqtt?sig=4");
  h.clients[1].connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
  assert.deepEqual(h.catchUps, [null, ID(2)]);
  assert.deepEqual(h.statuses, [Status.CONNECTING, Status.LIVE, Status.RECONNECTING, Status.LIVE], "never shown as down during the outage");
});

test("without a token the old connection is given up 5 min before AWS's 24 h limit, and the page reconnects the ordinary way", async () => {
  const h = harness();
  await live(h); // at clock 0
  h.api.down = true;
  await fire(h, plannedTimer(h));
  const delays = [];
  for (let i = 0; i < 10_000 && !h.clients[0].ended; i += 1) {
    const [retry] = h.timers.retries();
    assert.ok(retry, "a retry of the token fetch is pending");
    assert.equal(h.connection.status, Status.LIVE);
    delays.push(retry.ms);
    await fire(h, retry);
  }
  // Then it held on until 23 h 55 min after it opened (subscriber.py's
  // _WEBSOCKET_LIFETIME less _LIFETIME_MARGIN), retrying within the backoff's cap
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.clock(), 24 * HOUR_MS - 5 * 60_000);
  assert.ok(Math.max(...delays) <= 30_000, `${Math.max(...delays)}`);
  // and gave it up for an ordinary reconnect, which asks for a token itself
  assert.equal(h.connection.status, Status.RECONNECTING);
  const fetched = h.tokenCount();
  h.api.down = false;
  await fire(h, h.timers.retries()[0]);
  assert.equal(h.tokenCount(), fetched + 1);
  h.clients[1].connack();
  await flush();
  assert.equal(h.connection.status, Status.LIVE);
});

test("a drop while the renewal's token is on its way: the ordinary reconnect takes over and the late token is not used", async () => {
  const h = harness();
  await live(h);
  let answer;
  h.api.gate = new Promise((resolve) => (answer = resolve));
  await fire(h, plannedTimer(h));
  assert.equal(h.clients[0].ended, false);
  h.clients[0].serverClose();
  assert.equal(h.connection.status, Status.RECONNECTING);
  h.api.gate = null;
  answer();
  await flush();
  assert.equal(h.clients.length, 1, "no connection from the late token");
  await fire(h, h.timers.retries()[0]);
  assert.equal(h.clients.length, 2);
  assert.equal(h.clients[1].url, "ws://emu/mqtt?sig=3", "a fresh token");
});

test("a refused session at the renewal's token fetch ends it, as at any reconnect, after asking with the connection still open", async () => {
  let fatal = null;
  const h = harness();
  h.connection.options.onFatal = (err) => (fatal = err);
  await live(h);
  h.api.unauthorized = true;
  await fire(h, plannedTimer(h));
  assert.deepEqual(h.askedWithOldClosed, [true, false]);
  assert.equal(fatal?.message, "expired");
  assert.equal(h.connection.status, Status.OFFLINE);
  assert.equal(h.clients[0].ended, true);
  assert.equal(h.timers.pending.length, 0);
});

test("the renewal's numbers are subscriber.py's", () => {
  assert.equal(connectionModule.MAX_CONNECTION_MS, 23.5 * HOUR_MS);
  assert.equal(connectionModule.PLANNED_AGE_JITTER, 0.05);
  assert.equal(connectionModule.WEBSOCKET_LIFETIME_MS - connectionModule.LIFETIME_MARGIN_MS, 24 * HOUR_MS - 5 * 60_000);
});

// --- issue 12 item 8: an endpoint the browser cannot open (untrusted CA) ---------

test("attempts whose socket never hears from the server are reported as unreachable", async () => {
  const h = harness({ token: { url: "wss://127.0.0.1:8703/mqtt?X-Amz-Signature=x" } });
  h.connection.start();
  await flush();
  h.clients[0].emit("error", { type: "error" }); // a DOM Event: the browser says nothing more
  h.clients[0].emit("close");
  assert.deepEqual(h.unreachable, []);
  h.timers.run((ms) => ms < 3600_000);
  await flush();
  h.clients[1].emit("close");
  assert.deepEqual(h.unreachable, [{ url: "wss://127.0.0.1:8703/mqtt?X-Amz-Signature=x", failures: 2 }]);
  // a server that answers (even to refuse) is reachable
  h.timers.run((ms) => ms < 3600_000);
  await flush();
  h.clients[2].connack();
  await flush();
  assert.equal(h.connection.unreachable, 0);
});

test("a catch-up the API cannot serve is retried on the same connection until it works, and the status says so meanwhile", async () => {
  // The API answers GET /token, then fails the inbox read for a while (an
  // outage, a 502): what was sent while the page was away must still be
  // shown once the API is back, not only after the next reconnect (up to 23.5 h).
  const timers = new FakeTimers();
  const statuses = [];
  let failures = 12;
  let caughtUp = 0;
  const clients = [];
  const connection = new Connection({
    fetchToken: async () => ({ url: "ws://emu/mqtt", clientIdPrefix: "u.", topics: ["app/local/user/u/notifications"], keepalive: 50 }),
    connect: (url, options) => {
      const client = new FakeClient(url, options);
      clients.push(client);
      return client;
    },
    catchUp: async () => {
      if (failures > 0) {
        failures -= 1;
        throw new Error("GET /notifications answered 502");
      }
      caughtUp += 1;
    },
    onMessage() {},
    onStatus: (status, detail) => statuses.push([status, detail]),
    random: () => 1,
    now: () => 0,
    timers,
    suffix: () => "web-1",
  });
  connection.start();
  await flush();
  clients[0].connack();
  await flush();
  const delays = [];
  while (caughtUp === 0) {
    assert.ok(delays.length <= 12, "retried after every failure, no more");
    assert.equal(connection.status, Status.LIVE);
    assert.match(connection.detail, /catch-up failed/);
    delays.push(timers.run((ms) => ms < 3600_000));
    await flush();
  }
  assert.equal(caughtUp, 1);
  assert.equal(clients.length, 1, "no reconnect for a catch-up");
  // Backoff as the SDK's (subscriber.py _CATCH_UP_RETRY_*): 5 s doubling, at most 5 min.
  assert.equal(delays[0], 5000);
  assert.ok(delays.every((ms, i) => i === 0 || ms >= delays[i - 1]));
  assert.equal(Math.max(...delays), 300_000);
  assert.deepEqual(statuses.at(-1), [Status.LIVE, ""]);
});

test("a token API that keeps failing is reported after two attempts, with the error, until a token comes", async () => {
  // The page said "Connecting…" forever, the reason only in a tooltip, above
  // "Nothing yet. New notifications appear here": the API down at load, or a 403.
  const timers = new FakeTimers();
  const failing = [];
  let down = true;
  const clients = [];
  const connection = new Connection({
    fetchToken: async () => {
      if (down) throw Object.assign(new Error("nope"), { status: 403 });
      return { url: "ws://emu/mqtt", clientIdPrefix: "u.", topics: ["app/local/user/u/notifications"], keepalive: 50 };
    },
    connect: (url, options) => {
      const client = new FakeClient(url, options);
      clients.push(client);
      return client;
    },
    catchUp: async () => {},
    onMessage() {},
    onTokenFailing: (err, failures) => failing.push([err.message, failures]),
    random: () => 0.5,
    now: () => 0,
    timers,
    suffix: () => "web-1",
  });
  connection.start();
  await flush();
  assert.deepEqual(failing, []); // one failure may be a blip
  timers.runNext();
  await flush();
  timers.runNext();
  await flush();
  assert.deepEqual(failing, [["nope", 2], ["nope", 3]]);
  assert.equal(connection.status, Status.CONNECTING);
  down = false;
  timers.runNext();
  await flush();
  clients[0].connack();
  await flush();
  assert.equal(connection.status, Status.LIVE);
  // the count starts again after a token came
  down = true;
  clients[0].serverClose();
  timers.runNext();
  await flush();
  assert.equal(failing.length, 2);
});
