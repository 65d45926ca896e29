// One live MQTT connection to AWS IoT Core (or the local emulator), kept up.
//
// mqtt.js's own reconnect is off (`reconnectPeriod: 0`): the presigned URL and
// the credentials in it expire, so every attempt starts with a fresh
// GET /token. Attempts back off exponentially with full jitter. After every
// (re)connect, once subscribed, `catchUp` fetches what was sent meanwhile;
// the feed merges it with live messages by id.

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
 *   subscribe(topics: string[], options: {qos: 0 | 1}, callback: (err: Error | null | undefined, granted?: {topic: string, qos: number}[]) => void): unknown,
 *   end(force?: boolean): unknown,
 * }} MqttLike
 * @typedef {(url: string, options: object) => MqttLike} ConnectFn
 */

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
    /** Retry delays chosen so far (for tests and the status tooltip). */
    this.delays = /** @type {number[]} */ ([]);
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
   * @param {boolean} online
   */
  setOnline(online) {
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
    if (this.watchdog !== null) {
      this.timers.clear(this.watchdog);
      this.watchdog = null;
    }
    const client = this.client;
    this.client = null;
    if (client !== null) {
      client.removeAllListeners();
      // A late error from a client we dropped must not become an unhandled event.
      client.on("error", () => {});
      client.end(true);
    }
  }

  async #attemptConnect() {
    const generation = ++this.generation;
    this.#cancelRetry();
    this.#closeClient();
    const status = this.everLive ? Status.RECONNECTING : Status.CONNECTING;
    // Keep the last failure as the detail while still trying: it says why.
    this.#setStatus(status, status === this.status ? this.detail : "");
    /** @type {TokenResponse} */
    let token;
    try {
      token = await this.options.fetchToken();
    } catch (err) {
      if (generation !== this.generation) return;
      if (/** @type {any} */ (err)?.unauthorized) {
        this.stop();
        this.options.onFatal?.(err);
        return;
      }
      this.#failed(generation, `token: ${describe(err)}`);
      return;
    }
    if (generation !== this.generation) return;

    const clientId = token.clientIdPrefix + (this.options.suffix ?? randomSuffix)();
    const connectTimeout = this.options.connectTimeoutMs ?? 15000;
    const client = this.options.connect(token.url, {
      clientId,
      protocolVersion: 4,
      keepalive: token.keepalive,
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
    this.watchdog = this.timers.set(() => {
      this.watchdog = null;
      this.#failed(generation, "timed out connecting");
    }, connectTimeout + 5000);
    client.on("connect", () => {
      if (generation !== this.generation) return;
      client.subscribe(token.topics, { qos: 1 }, (err, granted) => {
        if (generation !== this.generation) return;
        const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (err || refused.length) {
          this.#failed(generation, err ? `subscribe: ${describe(err)}` : `subscribe refused: ${refused.join(", ")}`);
          return;
        }
        if (this.watchdog !== null) {
          this.timers.clear(this.watchdog);
          this.watchdog = null;
        }
        this.everLive = true;
        this.liveSince = this.now;
        this.#setStatus(Status.LIVE);
        void this.#catchUp(generation, 0);
      });
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

  /** @param {number} generation  @param {number} tries */
  async #catchUp(generation, tries) {
    try {
      await this.options.catchUp();
    } catch (err) {
      if (generation !== this.generation) return;
      if (/** @type {any} */ (err)?.unauthorized) {
        this.stop();
        this.options.onFatal?.(err);
        return;
      }
      this.options.log?.(`catch-up failed (${describe(err)}); retrying`);
      if (tries < 5) {
        this.timers.set(() => {
          if (generation === this.generation) void this.#catchUp(generation, tries + 1);
        }, backoffDelay(tries, this.#backoffOptions()));
      }
    }
  }

  #backoffOptions() {
    return { ...this.options.backoff, random: this.options.random ?? Math.random };
  }

  /**
   * This attempt (or connection) is over: schedule the next one, once.
   * @param {number} generation  @param {string} reason
   */
  #failed(generation, reason) {
    if (generation !== this.generation || this.stopped) return;
    this.generation += 1; // later events of this client are stale
    this.#closeClient();
    if (this.status === Status.LIVE && this.now - this.liveSince >= (this.options.stableMs ?? 5000)) {
      this.attempt = 0; // it was a good connection: start the backoff over
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
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
