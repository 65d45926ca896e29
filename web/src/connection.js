// One live MQTT connection to AWS IoT Core (or the local emulator), kept up.
//
// mqtt.js's own reconnect is off (`reconnectPeriod: 0`): the presigned URL and
// the credentials in it expire, so every attempt starts with a fresh
// GET /token. Attempts back off exponentially with full jitter. After every
// (re)connect, once subscribed, `catchUp` fetches what was sent meanwhile;
// the feed merges it with live messages by id.
//
// Subscriptions: one SUBSCRIBE per vended topic, sent in the token's order.
// A topic the server refuses is dropped for the rest of the session and
// named (`onRefused`); the others stay live. On MQTT 3.1.1 AWS IoT answers an
// unauthorised SUBSCRIBE by closing the connection (AWS IoT developer guide,
// "MQTT" / SDK migration guide; aws-iot-device-sdk-js issue 125) rather
// than with SUBACK 0x80, so a close while a topic's SUBSCRIBE is the oldest
// unanswered one counts against that topic; twice in a row and it is
// treated as refused (once could be a network blip).
//
// A socket can be dead but open (laptop sleep, network change): `check()`
// sends a PINGREQ and reconnects unless something answers within
// `pingTimeoutMs`; the page calls it on resume, on `online` and when the tab
// comes back after a long hidden spell. Connections are also renewed on a
// plan before AWS's 24 h WebSocket limit, at a random age, with the new
// token fetched while the old connection keeps delivering (as the SDK does).

import { backoffDelay } from "./backoff.js";
import { parsePayload } from "./feed.js";

export const Status = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
});

/**
 * @typedef {import("./api.js").TokenResponse} TokenResponse
 * @typedef {import("./feed.js").Envelope} Envelope
 * @typedef {{
 *   on(event: string, listener: (...args: any[]) => void): unknown,
 *   removeAllListeners(event?: string): unknown,
 *   subscribe(topic: string, options: {qos: 0 | 1}, callback: (err: (Error & {packet?: {cmd?: string, granted?: number[]}}) | null | undefined, granted?: {topic: string, qos: number}[]) => void): unknown,
 *   sendPing?: () => unknown,
 *   end(force?: boolean): unknown,
 * }} MqttLike
 * @typedef {(url: string, options: object) => MqttLike} ConnectFn
 */

/**
 * Keepalive when the token response has none, in seconds: the deployment
 * default (iotnotify.contract.DEFAULT_KEEPALIVE_SECONDS). Below the idle
 * timeouts that forget quiet connections (120 s in common proxies, 350 s in
 * AWS NAT Gateway); AWS IoT does not bill PINGREQ/PINGRESP (AWS IoT Core
 * pricing, "additional metering details"), so a shorter keepalive costs
 * wake-ups, not money.
 */
export const DEFAULT_KEEPALIVE_S = 50;

/**
 * The keepalive to ask for: the vended one (the deployment's setting) when it
 * is a number, brought into AWS IoT's 30..1200 s range as the service would
 * (AWS IoT developer guide, "MQTT": 0 or over 1200 becomes 1200, 1..29 becomes 30).
 * @param {unknown} vended
 */
export function keepaliveSeconds(vended) {
  if (typeof vended !== "number" || !Number.isFinite(vended) || vended < 0) return DEFAULT_KEEPALIVE_S;
  if (vended === 0 || vended > 1200) return 1200;
  return Math.max(30, Math.round(vended));
}

// The planned renewal. These numbers mirror client/iotnotify/subscriber.py
// (DEFAULT_MAX_CONNECTION_AGE, _PLANNED_AGE_JITTER, _WEBSOCKET_LIFETIME,
// _LIFETIME_MARGIN): change them together.
/**
 * AWS IoT closes WebSocket connections after 24 h (AWS general reference,
 * "AWS IoT Core quotas"); renew before, on our own schedule and with a
 * catch-up, at most this long after the connection opened.
 */
export const MAX_CONNECTION_MS = 23.5 * 3600 * 1000;
/**
 * Each connection is renewed at an age drawn at random in the last 5 % of
 * `MAX_CONNECTION_MS` (22.3-23.5 h): tabs that connected together (after an
 * outage of the endpoint, a deploy, a morning when everyone opens the page)
 * would otherwise renew together every day, a wave of GET /token (Lambda,
 * STS) and CONNECTs under per-second quotas that never spreads out
 * (apache/pulsar-client-go issue 556, coder/coder pull request 24096).
 */
export const PLANNED_AGE_JITTER = 0.05;
/** AWS IoT's WebSocket lifetime, and how long before it a connection for which no new token came is given up. */
export const WEBSOCKET_LIFETIME_MS = 24 * 3600 * 1000;
export const LIFETIME_MARGIN_MS = 5 * 60 * 1000;
/**
 * A catch-up the API cannot serve (an outage, a 502) is retried on the same
 * connection, for as long as it lasts, 5 s doubling to 5 min with full
 * jitter: as client/iotnotify/subscriber.py (_CATCH_UP_RETRY_INITIAL,
 * _CATCH_UP_RETRY_CAP). Never a reconnect: the live messages keep coming.
 */
export const CATCH_UP_RETRY_MS = 5000;
export const CATCH_UP_RETRY_CAP_MS = 300_000;
/** The status detail while a catch-up waits to be retried starts with this. */
export const CATCH_UP_FAILED = "catch-up failed";
/** Closes while the same topic's SUBSCRIBE is outstanding before it counts as refused. */
const CLOSES_BEFORE_REFUSED = 2;
/** Failed attempts that never reached the server before `onUnreachable` is told. */
const UNREACHABLE_AFTER = 2;
/** Token fetches failed in a row before `onTokenFailing` is told (one may be a blip). */
const TOKEN_FAILING_AFTER = 2;

/** A random client-id suffix: the token's prefix names the user, this the tab. */
export function randomSuffix() {
  const bytes = new Uint8Array(6);
  globalThis.crypto.getRandomValues(bytes);
  return `web-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class Connection {
  /**
   * @param {{
   *   fetchToken: () => Promise<TokenResponse>,
   *   connect: ConnectFn,
   *   catchUp: () => Promise<void>,
   *   onMessage: (note: Envelope, topic: string) => void,
   *   onStatus?: (status: string, detail: string) => void,
   *   onFatal?: (err: unknown) => void,
   *   onRefused?: (refused: Map<string, string>) => void,
   *   onUnreachable?: (url: string, failures: number) => void,
   *   onTokenFailing?: (err: unknown, failures: number) => void,
   *   pingTimeoutMs?: number,
   *   maxConnectionMs?: number,
   *   log?: (message: string) => void,
   *   backoff?: {baseMs?: number, capMs?: number, minMs?: number},
   *   random?: () => number,
   *   now?: () => number,
   *   timers?: {set: (fn: () => void, ms: number) => unknown, clear: (handle: unknown) => void},
   *   stableMs?: number,
   *   connectTimeoutMs?: number,
   *   suffix?: () => string,
   * }} options
   */
  constructor(options) {
    this.options = options;
    /** @type {string} */
    this.status = Status.OFFLINE;
    this.detail = "";
    this.attempt = 0;
    this.everLive = false;
    this.online = true;
    this.stopped = true;
    /** Bumped on every attempt and stop: callbacks of older attempts do nothing. */
    this.generation = 0;
    /** @type {MqttLike | null} */
    this.client = null;
    /** @type {unknown} */
    this.retryTimer = null;
    /** Fails an attempt that neither connects nor errors (a silent network). */
    /** @type {unknown} */
    this.watchdog = null;
    this.liveSince = 0;
    /** The last URL tried (for the "cannot reach" hint). */
    this.lastUrl = "";
    /** Whether the server sent anything on the current attempt's socket. */
    this.heard = false;
    /** Retry delays chosen so far (for tests and the status tooltip). */
    this.delays = /** @type {number[]} */ ([]);
    /** Topics refused for this session (topic -> why); never subscribed again. */
    this.refused = /** @type {Map<string, string>} */ (new Map());
    /** Closes in a row while a topic's SUBSCRIBE was the oldest unanswered one. */
    this.closesWhileSubscribing = /** @type {Map<string, number>} */ (new Map());
    /** The topic whose SUBSCRIBE is the oldest unanswered one, if any. */
    this.subscribing = /** @type {string | null} */ (null);
    /** Attempts in a row that failed before the server answered CONNECT. */
    this.unreachable = 0;
    /** Token fetches in a row that failed (API down, 403, 5xx). */
    this.tokenFailures = 0;
    /** The pending connection check's deadline timer. */
    /** @type {unknown} */
    this.pingTimer = null;
    /** @type {unknown} */
    this.plannedTimer = null;
    /** The next try of a catch-up that failed. */
    /** @type {unknown} */
    this.catchUpTimer = null;
    /** When the current connection's socket was opened (`now`, ms). */
    this.openedAt = 0;
    /** The age (ms after `openedAt`) at which the current connection is renewed. */
    this.plannedAgeMs = 0;
  }

  get timers() {
    return this.options.timers ?? { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(/** @type {any} */ (h)) };
  }

  get now() {
    return (this.options.now ?? Date.now)();
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    void this.#attemptConnect();
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    this.#cancelRetry();
    this.#closeClient();
    this.#setStatus(Status.OFFLINE, "signed out");
  }

  /**
   * Browser online/offline events: no point in retrying without a network.
   * `online` while already online (a network change: new Wi-Fi, VPN) checks
   * the connection, which may be open on a network that is gone.
   * @param {boolean} online
   */
  setOnline(online) {
    if (online && this.online) {
      this.check("the network changed");
      return;
    }
    if (online === this.online) return;
    this.online = online;
    if (this.stopped) return;
    if (!online) {
      this.generation += 1;
      this.#cancelRetry();
      this.#closeClient();
      this.#setStatus(Status.OFFLINE, "no network");
    } else {
      this.attempt = 0;
      void this.#attemptConnect();
    }
  }

  /**
   * Is the connection still there? When live: PINGREQ, and reconnect unless
   * any packet arrives within `pingTimeoutMs` (5 s). When not live: try now
   * instead of waiting for the backoff timer.
   * @param {string} reason  why we ask (shown if it turns out dead)
   */
  check(reason) {
    if (this.stopped || !this.online) return;
    const client = this.client;
    if (this.status !== Status.LIVE || client === null || typeof client.sendPing !== "function") {
      // Waiting out a backoff: the reason to wait may be gone, try now.
      if (this.retryTimer !== null) this.reconnectNow();
      return;
    }
    if (this.pingTimer !== null) return; // a check is already waiting
    const generation = this.generation;
    const timeoutMs = this.options.pingTimeoutMs ?? 5000;
    this.options.log?.(`checking the connection (${reason})`);
    this.pingTimer = this.timers.set(() => {
      this.pingTimer = null;
      this.#failed(generation, `no answer to a ping within ${Math.round(timeoutMs / 1000)} s after ${reason}`, true);
    }, timeoutMs);
    try {
      client.sendPing();
    } catch (err) {
      this.#failed(generation, `ping: ${describe(err)}`, true);
    }
  }

  /** Drop the connection and connect again now (e.g. the tab came back after a long sleep). */
  reconnectNow() {
    if (this.stopped || !this.online) return;
    this.#cancelRetry();
    this.attempt = 0;
    void this.#attemptConnect();
  }

  /** @param {string} status  @param {string} [detail] */
  #setStatus(status, detail = "") {
    if (status === this.status && detail === this.detail) return;
    this.status = status;
    this.detail = detail;
    this.options.onStatus?.(status, detail);
  }

  #cancelRetry() {
    if (this.retryTimer !== null) {
      this.timers.clear(this.retryTimer);
      this.retryTimer = null;
    }
  }

  #closeClient() {
    for (const key of /** @type {const} */ (["watchdog", "pingTimer", "plannedTimer", "catchUpTimer"])) {
      if (this[key] !== null) {
        this.timers.clear(this[key]);
        this[key] = null;
      }
    }
    this.subscribing = null;
    const client = this.client;
    this.client = null;
    if (client !== null) {
      client.removeAllListeners();
      // A late error from a client we dropped must not become an unhandled event.
      client.on("error", () => {});
      client.end(true);
    }
  }

  /** @param {TokenResponse | null} [prefetched]  a token the planned renewal already fetched */
  async #attemptConnect(prefetched = null) {
    const generation = ++this.generation;
    this.#cancelRetry();
    this.#closeClient();
    const status = this.everLive ? Status.RECONNECTING : Status.CONNECTING;
    // Keep the last failure as the detail while still trying: it says why.
    this.#setStatus(status, status === this.status ? this.detail : "");
    /** @type {TokenResponse} */
    let token;
    if (prefetched !== null) {
      token = prefetched;
    } else {
      try {
        token = await this.options.fetchToken();
      } catch (err) {
        if (generation !== this.generation) return;
        if (this.#endedBy(err)) return;
        // Said where the person looks, not only in the status tooltip: the
        // page would otherwise read "Connecting…" above "Nothing yet" forever.
        this.tokenFailures += 1;
        if (this.tokenFailures >= TOKEN_FAILING_AFTER && this.online) this.options.onTokenFailing?.(err, this.tokenFailures);
        this.#failed(generation, `token: ${describe(err)}`);
        return;
      }
      if (generation !== this.generation) return;
      this.tokenFailures = 0;
    }

    this.lastUrl = token.url;
    this.heard = false;
    const clientId = token.clientIdPrefix + (this.options.suffix ?? randomSuffix)();
    const connectTimeout = this.options.connectTimeoutMs ?? 15000;
    const client = this.options.connect(token.url, {
      clientId,
      protocolVersion: 4,
      keepalive: keepaliveSeconds(token.keepalive),
      reconnectPeriod: 0,
      clean: true,
      connectTimeout,
      resubscribe: false,
      // AWS IoT Core takes at most 8 filters per SUBSCRIBE and closes the
      // connection on more (quotas page; aws-iot-device-sdk-js-v2 issue 567):
      // a token naming more topics is subscribed in batches.
      subscribeBatchSize: 8,
    });
    this.client = client;
    this.openedAt = this.now;
    this.watchdog = this.timers.set(() => {
      this.watchdog = null;
      this.#failed(generation, "timed out connecting");
    }, connectTimeout + 5000);
    client.on("connect", () => {
      if (generation !== this.generation) return;
      this.unreachable = 0;
      this.#subscribe(generation, client, token.topics.filter((topic) => !this.refused.has(topic)));
    });
    client.on("packetreceive", () => {
      // Any packet proves the socket alive: a pending check is answered.
      if (generation !== this.generation) return;
      this.heard = true;
      if (this.pingTimer === null) return;
      this.timers.clear(this.pingTimer);
      this.pingTimer = null;
    });
    client.on("message", (topic, payload) => {
      if (generation !== this.generation) return;
      const note = parsePayload(payload);
      if (note === null) {
        this.options.log?.(`ignored a message on ${topic} that is not an iotnotify envelope`);
        return;
      }
      this.options.onMessage(note, topic);
    });
    client.on("error", (err) => this.#failed(generation, describe(err)));
    client.on("close", () => this.#failed(generation, "connection closed"));
  }

  /**
   * One SUBSCRIBE per topic, in order; live once every answer is in and at
   * least one topic was granted.
   * @param {number} generation  @param {MqttLike} client  @param {string[]} topics
   */
  #subscribe(generation, client, topics) {
    const pending = [...topics];
    const granted = /** @type {string[]} */ ([]);
    const newlyRefused = /** @type {string[]} */ ([]);
    this.subscribing = pending[0] ?? null;
    const done = () => {
      if (newlyRefused.length) this.options.onRefused?.(new Map(this.refused));
      if (granted.length === 0 && this.refused.size > 0) {
        // Nothing is allowed: retrying cannot help until the deployment changes.
        const why = `the server refused every topic: ${[...this.refused.keys()].join(", ")}`;
        this.options.log?.(why);
        this.stopped = true;
        this.generation += 1;
        this.#closeClient();
        this.#setStatus(Status.OFFLINE, why);
        return;
      }
      if (this.watchdog !== null) {
        this.timers.clear(this.watchdog);
        this.watchdog = null;
      }
      this.everLive = true;
      this.liveSince = this.now;
      this.#planRenewal(generation);
      this.#setStatus(Status.LIVE, this.#liveDetail());
      void this.#catchUp(generation, 0);
    };
    if (pending.length === 0) {
      done();
      return;
    }
    for (const topic of topics) {
      client.subscribe(topic, { qos: 1 }, (err, answer) => {
        if (generation !== this.generation) return;
        const codes = err?.packet?.cmd === "suback" ? (err.packet.granted ?? []) : (answer ?? []).map((g) => g.qos);
        if (err && err.packet?.cmd !== "suback") return; // the connection went: "close" handles it
        pending.splice(pending.indexOf(topic), 1);
        this.subscribing = pending[0] ?? null;
        this.closesWhileSubscribing.delete(topic);
        if (codes.some((code) => (code & 0x80) !== 0)) {
          this.refused.set(topic, "the server refused the subscription");
          newlyRefused.push(topic);
        } else {
          granted.push(topic);
        }
        if (pending.length === 0) done();
      });
    }
  }

  /**
   * The connection closed while `topic`'s SUBSCRIBE was the oldest unanswered
   * one: AWS's answer to an unauthorised SUBSCRIBE on MQTT 3.1.1, or a blip.
   * @param {string} topic
   */
  #closedWhileSubscribing(topic) {
    const closes = (this.closesWhileSubscribing.get(topic) ?? 0) + 1;
    if (closes < CLOSES_BEFORE_REFUSED) {
      this.closesWhileSubscribing.set(topic, closes);
      return;
    }
    this.closesWhileSubscribing.delete(topic);
    this.refused.set(topic, "the server closed the connection on its SUBSCRIBE");
    this.options.log?.(`giving up on ${topic}: the server closed the connection on its SUBSCRIBE ${closes} times`);
    this.options.onRefused?.(new Map(this.refused));
  }

  /**
   * Draws this connection's renewal age and sets its timer.
   * @param {number} generation
   */
  #planRenewal(generation) {
    const maxMs = this.options.maxConnectionMs ?? MAX_CONNECTION_MS;
    const age = Math.floor(maxMs * (1 - PLANNED_AGE_JITTER * (this.options.random ?? Math.random)()));
    this.plannedAgeMs = age;
    // Past this the connection is given up even without a new token.
    const lastAt = this.openedAt + Math.max(age, WEBSOCKET_LIFETIME_MS - LIFETIME_MARGIN_MS);
    this.#renewAt(generation, this.openedAt + age, lastAt, 0);
  }

  /** @param {number} generation  @param {number} at  @param {number} lastAt  @param {number} tries */
  #renewAt(generation, at, lastAt, tries) {
    this.plannedTimer = this.timers.set(
      () => {
        this.plannedTimer = null;
        void this.#renew(generation, lastAt, tries);
      },
      Math.max(0, at - this.now),
    );
  }

  /**
   * The planned renewal: GET /token first, while the connection keeps
   * delivering; only with the token in hand is the connection replaced
   * (catch-up covers the moment between the two). If the token API fails (an
   * outage, or 429s while many clients renew) the connection is kept and the
   * fetch retried with the reconnect backoff, until `lastAt`; then it is given
   * up and the ordinary reconnect takes over. A drop or `stop()` meanwhile
   * bumps the generation: a late token is then not used.
   * @param {number} generation  @param {number} lastAt  @param {number} tries
   */
  async #renew(generation, lastAt, tries) {
    if (generation !== this.generation || this.stopped) return;
    if (this.now >= lastAt) {
      this.options.log?.("no token for the renewal before AWS's 24 h WebSocket limit: reconnecting");
      this.attempt = 0;
      void this.#attemptConnect();
      return;
    }
    /** @type {TokenResponse} */
    let token;
    try {
      token = await this.options.fetchToken();
    } catch (err) {
      if (generation !== this.generation || this.stopped) return;
      if (this.#endedBy(err)) return;
      const delay = backoffDelay(tries, this.#backoffOptions());
      this.options.log?.(`no token for the planned renewal (${describe(err)}); keeping this connection, retrying in ${delay} ms`);
      this.#renewAt(generation, Math.min(this.now + delay, lastAt), lastAt, tries + 1);
      return;
    }
    if (generation !== this.generation || this.stopped) return;
    this.options.log?.("renewing the connection before AWS's 24 h WebSocket limit");
    this.attempt = 0;
    void this.#attemptConnect(token);
  }

  /**
   * A refused session (the API's 401: signed out, revoked) ends the
   * connection for good, wherever a call met it; true when `err` is one.
   * @param {unknown} err
   */
  #endedBy(err) {
    if (!(/** @type {any} */ (err)?.unauthorized)) return false;
    this.stop();
    this.options.onFatal?.(err);
    return true;
  }

  /** What a live connection's status says: the topics refused, if any. */
  #liveDetail() {
    return this.refused.size ? `not receiving ${[...this.refused.keys()].join(", ")} (refused)` : "";
  }

  /**
   * Reads what was sent while the page was away; a failure is retried on
   * this connection until it works (a 401 that no new ID token cures ends
   * the session instead), and the status says so meanwhile.
   * @param {number} generation  @param {number} tries
   */
  async #catchUp(generation, tries) {
    try {
      await this.options.catchUp();
    } catch (err) {
      if (generation !== this.generation || this.stopped) return;
      if (this.#endedBy(err)) return;
      const delay = backoffDelay(tries, {
        baseMs: CATCH_UP_RETRY_MS,
        capMs: CATCH_UP_RETRY_CAP_MS,
        random: this.options.random ?? Math.random,
      });
      this.options.log?.(`catch-up failed (${describe(err)}); retrying in ${delay} ms`);
      if (this.status === Status.LIVE) this.#setStatus(Status.LIVE, `${CATCH_UP_FAILED} (${describe(err)}); retrying`);
      if (this.catchUpTimer !== null) this.timers.clear(this.catchUpTimer);
      this.catchUpTimer = this.timers.set(() => {
        this.catchUpTimer = null;
        if (generation === this.generation && !this.stopped) void this.#catchUp(generation, tries + 1);
      }, delay);
      return;
    }
    if (generation === this.generation && this.status === Status.LIVE) this.#setStatus(Status.LIVE, this.#liveDetail());
  }

  #backoffOptions() {
    return { ...this.options.backoff, random: this.options.random ?? Math.random };
  }

  /**
   * This attempt (or connection) is over: schedule the next one, once.
   * @param {number} generation  @param {string} reason
   * @param {boolean} [dead] a check found it dead: retry at once (a fresh start)
   */
  #failed(generation, reason, dead = false) {
    if (generation !== this.generation || this.stopped) return;
    this.generation += 1; // later events of this client are stale
    const suspect = this.subscribing;
    // A socket was opened for this attempt but the server never said a word:
    // unreachable, or (wss) a certificate this browser does not trust.
    const unheard = this.client !== null && !this.heard;
    this.#closeClient();
    if (suspect !== null) this.#closedWhileSubscribing(suspect);
    if (dead || (this.status === Status.LIVE && this.now - this.liveSince >= (this.options.stableMs ?? 5000))) {
      this.attempt = 0; // it was a good connection: start the backoff over
    }
    if (unheard && this.online) {
      this.unreachable += 1;
      if (this.unreachable >= UNREACHABLE_AFTER) this.options.onUnreachable?.(this.lastUrl, this.unreachable);
    }
    if (!this.online) {
      this.#setStatus(Status.OFFLINE, "no network");
      return;
    }
    const delay = backoffDelay(this.attempt, this.#backoffOptions());
    this.delays.push(delay);
    this.attempt += 1;
    this.options.log?.(`connection lost (${reason}); retrying in ${delay} ms`);
    this.#setStatus(this.everLive ? Status.RECONNECTING : Status.CONNECTING, reason);
    this.retryTimer = this.timers.set(() => {
      this.retryTimer = null;
      if (!this.stopped && this.online) void this.#attemptConnect();
    }, delay);
  }
}

/** @param {unknown} err */
function describe(err) {
  if (err !== null && typeof err === "object" && !(err instanceof Error) && "type" in err) {
    return `WebSocket ${String(/** @type {{type: unknown}} */ (err).type)}`; // a DOM Event from the socket
  }
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
