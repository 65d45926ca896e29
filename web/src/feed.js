// The notification feed: one entry per envelope id, whatever path it came by.
//
// Live MQTT messages and catch-up pages overlap by design (catch-up runs after
// every (re)connect), so everything is merged by envelope `id`. Ids are ULIDs:
// plain string comparison is send order, which is what `since=` relies on.

/** @typedef {{v: number, id: string, type: string, title: string, body: string, data: object, ts: string}} Envelope */

const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

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
  return {
    v: 1,
    id: raw.id,
    type: typeof raw.type === "string" ? raw.type : "notification",
    title: raw.title,
    body: typeof raw.body === "string" ? raw.body : "",
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
   * @param {{maxItems?: number, readIds?: Iterable<string>}} [options]
   */
  constructor({ maxItems = 200, readIds = [] } = {}) {
    this.maxItems = maxItems;
    /** @type {Map<string, Envelope>} */
    this.notes = new Map();
    /** @type {Set<string>} */
    this.read = new Set(readIds);
    /** Highest id ever added: where the next catch-up starts. */
    this.lastId = /** @type {string | null} */ (null);
    // Ids below this were trimmed away; they must not come back as "new".
    this.floor = "";
  }

  /**
   * Adds envelopes; returns the ones not seen before, oldest first.
   * @param {Iterable<unknown>} items
   * @returns {Envelope[]}
   */
  add(items) {
    /** @type {Envelope[]} */
    const fresh = [];
    for (const item of items) {
      const note = toEnvelope(item);
      if (note === null || this.notes.has(note.id) || note.id < this.floor) continue;
      this.notes.set(note.id, note);
      fresh.push(note);
      if (this.lastId === null || note.id > this.lastId) this.lastId = note.id;
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
