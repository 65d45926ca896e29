// The notification feed: one entry per envelope id, whatever path it came by.
//
// Live MQTT messages and catch-up pages overlap by design (catch-up runs after
// every (re)connect), so everything is merged by envelope `id`. Ids are ULIDs:
// plain string comparison is the order they were made in, which is what
// `since=` relies on. Made, not delivered: an older id can reach the inbox
// after a newer one was shown, so catch-up reads a look-back window behind the
// newest id (`catchUpSince`) and `add` drops what it returns again.

/** @typedef {{v: number, id: string, type: string, title: string, body: string, data: object, ts: string}} Envelope */

import { plainText } from "./text.js";

const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
// A ULID's first 10 characters are its 48-bit millisecond, the other 16 its
// random bits (ulid/spec); the same rule as iotnotify.contract.id_lower_bound.
const TIME_CHARS = 10;
const RANDOM_CHARS = 16;

/**
 * How far behind the newest id it showed a reconnect's catch-up reads again.
 * An id's time is when it was made, not when it reached the inbox:
 * `notify_many` takes one id for all its users (10,000 in about 3.2 s, README
 * "Fan-out at cloud latency") and publisher hosts' clocks differ, so an
 * inbox can receive an id older than one the page already showed. 60 s, as
 * the Python SDK (DEFAULT_CATCH_UP_LOOKBACK): twelve times the fan-out
 * target plus clock skew, for re-reading one minute of the inbox.
 */
export const CATCH_UP_LOOKBACK_MS = 60_000;

/**
 * How far ahead of the server's clock an own-topic id may be made and still
 * become the catch-up point: publisher clocks that are minutes off, not more
 * (the Python SDK's _FUTURE_ID_ALLOWANCE). Every real id sorts below an id
 * made further ahead, so as the catch-up point it made each later catch-up
 * ask for nothing: what came while the page was offline was never shown.
 */
export const FUTURE_ID_ALLOWANCE_MS = 300_000;

/**
 * The epoch millisecond a ULID was made at (its first 10 characters).
 * @param {string} id  a ULID
 * @returns {number}
 */
export function idMillis(id) {
  let millis = 0;
  // 48 bits fit a double exactly (2 ** 53), so plain arithmetic is exact.
  for (const char of id.slice(0, TIME_CHARS)) millis = millis * 32 + CROCKFORD.indexOf(char);
  return millis;
}

/**
 * The smallest id made `lookbackMs` before `id` (its millisecond minus the
 * look-back, random part all "0"), never before the epoch: the `since=` that
 * returns `id`, anything newer and anything made up to `lookbackMs` earlier.
 * @param {string} id  a ULID  @param {number} lookbackMs
 * @returns {string}
 */
export function idLowerBound(id, lookbackMs) {
  if (!ULID_RE.test(id)) throw new TypeError(`not a notification id: ${JSON.stringify(id)}`);
  if (!Number.isFinite(lookbackMs) || lookbackMs < 0) throw new RangeError(`bad look-back: ${lookbackMs}`);
  let millis = Math.min(Math.max(idMillis(id) - Math.round(lookbackMs), 0), 2 ** 48 - 1);
  let time = "";
  for (let i = 0; i < TIME_CHARS; i += 1) {
    time = CROCKFORD[millis % 32] + time;
    millis = Math.floor(millis / 32);
  }
  return time + "0".repeat(RANDOM_CHARS);
}

/**
 * The envelope inside an MQTT payload or an API item, or null when it is not one.
 * @param {unknown} value
 * @returns {Envelope | null}
 */
export function toEnvelope(value) {
  if (value === null || typeof value !== "object") return null;
  const raw = /** @type {Record<string, unknown>} */ (value);
  if (raw.v !== 1 || typeof raw.id !== "string" || !ULID_RE.test(raw.id)) return null;
  if (typeof raw.title !== "string") return null;
  // What the page shows of it, cleaned once here for every display (list,
  // toast, OS notification, labels): a sender's bidi overrides and controls go.
  return {
    v: 1,
    id: raw.id,
    type: typeof raw.type === "string" ? plainText(raw.type) : "notification",
    title: plainText(raw.title),
    body: typeof raw.body === "string" ? plainText(raw.body) : "",
    data: raw.data !== null && typeof raw.data === "object" ? raw.data : {},
    ts: typeof raw.ts === "string" ? raw.ts : "",
  };
}

/**
 * Parses an MQTT payload (bytes or text) into an envelope, or null.
 * @param {Uint8Array | string} payload
 */
export function parsePayload(payload) {
  try {
    const text = typeof payload === "string" ? payload : new TextDecoder().decode(payload);
    return toEnvelope(JSON.parse(text));
  } catch {
    return null;
  }
}

export class Feed {
  /**
   * @param {{maxItems?: number, readIds?: Iterable<string>, now?: () => number}} [options]
   *   now: the server's clock in epoch milliseconds (the token answer's
   *   `serverTime` plus the time since), Date.now by default
   */
  constructor({ maxItems = 200, readIds = [], now = Date.now } = {}) {
    this.maxItems = maxItems;
    this.now = now;
    /** @type {Map<string, Envelope>} */
    this.notes = new Map();
    /** @type {Set<string>} */
    this.read = new Set(readIds);
    /** Highest id ever added (any topic). */
    this.lastId = /** @type {string | null} */ (null);
    /**
     * Highest id added from the user's own topic, the one the inbox mirrors:
     * where the next catch-up looks back from. A broadcast's or a game's id
     * (never in the inbox; another host's clock) must not move it, nor an
     * id made more than FUTURE_ID_ALLOWANCE_MS ahead of the server's clock.
     */
    this.lastOwnId = /** @type {string | null} */ (null);
    // Ids below this were trimmed away; they must not come back as "new".
    this.floor = "";
  }

  /**
   * The `since=` of the next catch-up: a look-back window before the newest
   * own-topic id added (null: everything in the inbox). What the window
   * returns again is dropped by `add`, by id (entries trimmed away are below
   * `floor`).
   * @param {number} [lookbackMs]
   * @returns {string | null}
   */
  catchUpSince(lookbackMs = CATCH_UP_LOOKBACK_MS) {
    return this.lastOwnId === null ? null : idLowerBound(this.lastOwnId, lookbackMs);
  }

  /**
   * Adds envelopes; returns the ones not seen before, oldest first.
   * @param {Iterable<unknown>} items
   * @param {{own?: boolean}} [options]  own: from the user's own topic or the
   *   inbox (the default), as opposed to a broadcast or a channel
   * @returns {Envelope[]}
   */
  add(items, { own = true } = {}) {
    /** @type {Envelope[]} */
    const fresh = [];
    for (const item of items) {
      const note = toEnvelope(item);
      if (note === null || this.notes.has(note.id) || note.id < this.floor) continue;
      this.notes.set(note.id, note);
      fresh.push(note);
      if (this.lastId === null || note.id > this.lastId) this.lastId = note.id;
      if (
        own &&
        (this.lastOwnId === null || note.id > this.lastOwnId) &&
        idMillis(note.id) <= this.now() + FUTURE_ID_ALLOWANCE_MS
      ) {
        this.lastOwnId = note.id;
      }
    }
    this.#trim();
    fresh.sort(byId);
    return fresh.filter((note) => this.notes.has(note.id));
  }

  #trim() {
    if (this.notes.size <= this.maxItems) return;
    const ids = [...this.notes.keys()].sort();
    for (const id of ids.slice(0, ids.length - this.maxItems)) this.notes.delete(id);
    this.floor = ids[ids.length - this.maxItems];
  }

  /** @param {string} id */
  isRead(id) {
    return this.read.has(id);
  }

  /** Newest first. */
  list() {
    return [...this.notes.values()].sort(byId).reverse();
  }

  unread() {
    return this.list().filter((note) => !this.read.has(note.id));
  }

  unreadCount() {
    let count = 0;
    for (const id of this.notes.keys()) if (!this.read.has(id)) count += 1;
    return count;
  }

  /** @param {string} id  @returns {boolean} whether it changed */
  markRead(id) {
    if (!this.notes.has(id) || this.read.has(id)) return false;
    this.read.add(id);
    return true;
  }

  /** @returns {string[]} the ids that changed */
  markAllRead() {
    const changed = [];
    for (const id of this.notes.keys()) {
      if (!this.read.has(id)) {
        this.read.add(id);
        changed.push(id);
      }
    }
    return changed;
  }

  /** Read ids still worth remembering (those of notes in the feed). */
  readIdsToKeep() {
    return [...this.read].filter((id) => this.notes.has(id)).sort();
  }
}

/** @param {Envelope} a  @param {Envelope} b */
function byId(a, b) {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
