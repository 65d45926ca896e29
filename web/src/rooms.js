// The Rooms view: list, create and join chat rooms, read history, chat live.
//
// Joining a room is what DESIGN.md ("Channels") says it is: a new token
// naming the room (GET /token?rooms=ROOM: 403 for a private room the user is
// not in, 404 for an unknown one) and a new MQTT connection on its URL,
// subscribed to the room topic. The room has its own connection, beside the
// notification one, so joining never interrupts notifications. The send box
// publishes {"text", "cid"} to the room's *input* topic; the moderator (a topic
// rule and a Lambda) decides what reaches the room topic, which clients may only
// read. `cid` is the page's own id for the line: a fresh one per line, the same
// one when the person sends a line again after "Not sent" (its first copy may
// have reached the broker before the connection dropped), so the moderator
// keeps one copy (README, "Chat rooms"). Who sent a message is the envelope's `sender` (taken by the moderator
// from the publisher's client id), never anything the page or a payload claims.
// Every text is shown with textContent, never as HTML.

import { ApiError } from "./api.js";
import { backoffDelay } from "./backoff.js";
import { plainText } from "./text.js";

/** Messages shown per room (history page size and the live list's cap). */
export const HISTORY_LIMIT = 50;
const MAX_SHOWN = 500;
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
// DESIGN.md "User id"; a chat envelope's sender is one.
const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;
// The contract's cid (iotnotify.contract.validate_chat_cid): 16 to 64 of A-Z a-z 0-9 _ -.
const CID = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * @typedef {{v: 1, id: string, type: "chat.message", room: string, sender: string, text: string, ts: string, cid?: string}} ChatMessage
 * @typedef {{room: string, private: boolean, owner: string, topic: string, inputTopic: string, members?: string[]}} Room
 * @typedef {{url: string, clientIdPrefix: string, channels: Record<string, {topic: string, inputTopic: string}>}} RoomToken
 * @typedef {{
 *   on(event: string, listener: (...args: any[]) => void): unknown,
 *   subscribe(topic: string, options: {qos: 0 | 1}, callback: (err: Error | null | undefined, granted?: unknown) => void): unknown,
 *   publish(topic: string, payload: string, options: {qos: 0 | 1}, callback?: (err?: Error) => void): unknown,
 *   end(force?: boolean): unknown,
 * }} MqttLike
 * @typedef {(url: string, options: object) => MqttLike} ConnectFn
 * @typedef {{baseUrl: string, auth: {idToken: (forceRefresh?: boolean) => Promise<string>}, fetch: typeof fetch}} ApiLike
 */

/** Whether `name` is a valid room name (DESIGN.md: the user-id alphabet, 1..64). @param {unknown} name */
export function validRoomName(name) {
  return typeof name === "string" && ROOM_NAME.test(name);
}

/**
 * A chat envelope from an MQTT payload or a history entry, or null.
 * @param {unknown} raw  a parsed object or a JSON string / bytes
 * @returns {ChatMessage | null}
 */
export function parseChatMessage(raw) {
  let value = raw;
  if (typeof value === "string" || value instanceof Uint8Array) {
    try {
      value = JSON.parse(typeof value === "string" ? value : new TextDecoder().decode(value));
    } catch {
      return null;
    }
  }
  if (value === null || typeof value !== "object") return null;
  const m = /** @type {Record<string, unknown>} */ (value);
  if (m.v !== 1 || m.type !== "chat.message" || typeof m.id !== "string" || !ULID.test(m.id)) return null;
  if (typeof m.room !== "string" || typeof m.sender !== "string" || typeof m.text !== "string") return null;
  // The moderator takes the sender from the client id, a user id: anything
  // else did not come from it (and cleaned it could pass for someone else).
  if (!USER_ID.test(m.sender)) return null;
  /** @type {ChatMessage} */
  const message = { v: 1, id: m.id, type: "chat.message", room: m.room, sender: m.sender, text: plainText(m.text), ts: typeof m.ts === "string" ? m.ts : "" };
  if (typeof m.cid === "string" && CID.test(m.cid)) message.cid = m.cid;
  return message;
}

/** A fresh cid for one line: 128 random bits, base64url, 22 characters (as iotnotify.contract.new_chat_cid). */
export function newCid() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The payload of one line on the input topic. @param {string} text @param {string} cid */
export function chatInput(text, cid) {
  return JSON.stringify({ text, cid });
}

/**
 * The line being sent and its cid: the same cid while the same text is sent
 * again (after "Not sent"), a fresh one for any other text or once it went out.
 */
export class PendingLine {
  /** @param {() => string} [makeCid] */
  constructor(makeCid = newCid) {
    this.makeCid = makeCid;
    /** @type {string | null} */
    this.text = null;
    this.cid = "";
  }

  /** The cid to send `text` with. @param {string} text */
  cidFor(text) {
    if (this.text !== text) {
      this.text = text;
      this.cid = this.makeCid();
    }
    return this.cid;
  }

  /** The line was sent (the broker acknowledged it): the next one gets a new cid. */
  sent() {
    this.text = null;
    this.cid = "";
  }
}

/**
 * `shown` plus `incoming`, each id once, oldest first (ids are ULIDs), at most `max`.
 * @param {ChatMessage[]} shown  @param {ChatMessage[]} incoming  @param {number} [max]
 */
export function mergeMessages(shown, incoming, max = MAX_SHOWN) {
  const byId = new Map(shown.map((m) => [m.id, m]));
  for (const m of incoming) byId.set(m.id, m);
  const merged = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return merged.slice(Math.max(0, merged.length - max));
}

/**
 * The members line of a room: how many, and how many are online now
 * (from `GET /presence`, which answers only for people who share a channel
 * with the caller; `presence` is null until it has answered).
 * @param {string[]} members
 * @param {Record<string, {online: boolean}> | null} presence
 */
export function membersLine(members, presence) {
  const count = `Members: ${members.length}`;
  if (presence === null) return count;
  const online = members.filter((m) => presence[m]?.online === true).length;
  return `${count}, ${online} online`;
}

/** How a sender is shown: "you", or the start of their user id. @param {string} sender @param {string} self */
export function senderLabel(sender, self) {
  if (sender === self) return "you";
  return sender.length > 12 ? `${sender.slice(0, 8)}…` : sender;
}

/** The rooms routes of the API, with the same auth and errors as ./api.js. */
export class RoomsClient {
  /** @param {ApiLike} api */
  constructor(api) {
    this.api = api;
  }

  /** @param {string} method  @param {string} path  @param {unknown} [body] */
  async request(method, path, body) {
    const url = `${this.api.baseUrl}${path}`;
    for (let attempt = 0; ; attempt += 1) {
      const token = await this.api.auth.idToken(attempt > 0);
      /** @type {Record<string, string>} */
      const headers = { Authorization: token };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await this.api.fetch(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        });
      } catch (err) {
        throw new ApiError(0, "network", `cannot reach ${path.split("?")[0]}: ${err instanceof Error ? err.message : err}`);
      }
      if (response.status === 401 && attempt === 0) continue;
      const text = await response.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = null;
      }
      if (!response.ok) {
        const code = data && typeof data.error === "string" ? data.error : `http_${response.status}`;
        const message = data && typeof data.message === "string" ? data.message : `${path} answered ${response.status}`;
        throw new ApiError(response.status, code, message);
      }
      return data;
    }
  }

  /** Every room the user may see (public, and private ones they are in), following `next`. @returns {Promise<Room[]>} */
  async list() {
    /** @type {Room[]} */
    const rooms = [];
    let next = "";
    for (let page = 0; page < 50; page += 1) {
      const query = new URLSearchParams({ limit: "100" });
      if (next) query.set("next", next);
      const data = await this.request("GET", `/chats?${query}`);
      rooms.push(...(Array.isArray(data?.rooms) ? data.rooms : []));
      next = typeof data?.next === "string" ? data.next : "";
      if (!next) break;
    }
    return rooms.sort((a, b) => a.room.localeCompare(b.room));
  }

  /** @param {string} room  @param {boolean} isPrivate  @returns {Promise<Room>} */
  create(room, isPrivate) {
    return this.request("POST", "/chats", { room, private: isPrivate });
  }

  /** @param {string} room  @param {string} user  @returns {Promise<Room>} */
  addMember(room, user) {
    return this.request("POST", `/chats/${encodeURIComponent(room)}/members`, { user });
  }

  /**
   * Who of `users` is online (`GET /presence`): `{userId: {online, connections, lastSeen}}`
   * for those who share a room or game with the caller; at most 100 per call.
   * @param {string[]} users
   * @returns {Promise<Record<string, {online: boolean, connections: number, lastSeen: number | null}>>}
   */
  async presence(users) {
    const query = new URLSearchParams({ users: users.slice(0, 100).join(",") });
    const data = await this.request("GET", `/presence?${query}`);
    return data && typeof data.presence === "object" && data.presence !== null ? data.presence : {};
  }

  /** The latest messages, oldest first. @param {string} room @returns {Promise<ChatMessage[]>} */
  async history(room) {
    const data = await this.request("GET", `/chats/${encodeURIComponent(room)}/messages?limit=${HISTORY_LIMIT}`);
    const raw = Array.isArray(data?.messages) ? data.messages : [];
    return raw.map(parseChatMessage).filter(/** @returns {m is ChatMessage} */ (/** @type {ChatMessage | null} */ m) => m !== null);
  }

  /** A token whose session may use `room`. @param {string} room @returns {Promise<RoomToken>} */
  async token(room) {
    const data = await this.request("GET", `/token?rooms=${encodeURIComponent(room)}`);
    if (!data || typeof data.url !== "string" || !data.channels?.[room]) {
      throw new ApiError(502, "bad_token_response", "GET /token answered without the room's channel");
    }
    return data;
  }
}

/** One joined room: its MQTT connection and what it shows. */
export class JoinedRoom {
  /**
   * @param {{room: string, token: RoomToken, connect: ConnectFn, onMessage: (m: ChatMessage) => void,
   *          onState: (state: "live" | "closed" | "failed", detail?: string) => void}} options
   *   onState: "closed" when the connection went (the view rejoins), "failed"
   *   when the room refused the subscription (rejoining would not help)
   */
  constructor({ room, token, connect, onMessage, onState }) {
    this.room = room;
    this.channel = token.channels[room];
    this.closedByUs = false;
    const bytes = new Uint8Array(6);
    globalThis.crypto.getRandomValues(bytes);
    const suffix = `room-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    this.client = connect(token.url, {
      clientId: token.clientIdPrefix + suffix,
      protocolVersion: 4,
      keepalive: 50,
      reconnectPeriod: 0, // a reconnect needs a fresh token: the page rejoins instead
      clean: true,
      resubscribe: false,
    });
    this.client.on("connect", () => {
      this.client.subscribe(this.channel.topic, { qos: 0 }, (err) => {
        if (err) onState("failed", `could not subscribe: ${err.message}`);
        else onState("live");
      });
    });
    this.client.on("message", (/** @type {string} */ topic, /** @type {Uint8Array} */ payload) => {
      if (topic !== this.channel.topic) return;
      const message = parseChatMessage(payload);
      if (message !== null && message.room === room) onMessage(message);
    });
    this.client.on("close", () => {
      if (!this.closedByUs) onState("closed", "the connection to the room closed");
    });
    this.client.on("error", () => {}); // "close" follows and says what the person needs to know
  }

  /** Publish one line (QoS 1); resolves on the broker's PUBACK. @param {string} text @param {string} cid */
  send(text, cid) {
    return new Promise((resolve, reject) => {
      this.client.publish(this.channel.inputTopic, chatInput(text, cid), { qos: 1 }, (err) => (err ? reject(err) : resolve(undefined)));
    });
  }

  leave() {
    this.closedByUs = true;
    this.client.end(true);
  }
}

/** The Rooms section of the page (ids in index.html under #rooms-view). */
export class RoomsView {
  /**
   * @param {{api: ApiLike, connect: ConnectFn, self: () => string, doc?: Document,
   *          timers?: {set: (fn: () => void, ms: number) => unknown, clear: (handle: unknown) => void},
   *          random?: () => number}} options
   */
  constructor({ api, connect, self, doc = document, timers, random = Math.random }) {
    this.timers = timers ?? { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(/** @type {any} */ (h)) };
    this.random = random;
    /** The pending rejoin of a room whose connection dropped. */
    /** @type {unknown} */
    this.rejoinTimer = null;
    /** Rejoins in a row that did not get live (the backoff's exponent). */
    this.rejoinAttempt = 0;
    this.client = new RoomsClient(api);
    this.connect = connect;
    this.self = self;
    /** @param {string} id */
    const el = (id) => /** @type {any} */ (doc.getElementById(id));
    this.doc = doc;
    this.ui = {
      view: el("rooms-view"),
      list: el("rooms-list"),
      refresh: /** @type {HTMLButtonElement} */ (el("rooms-refresh")),
      createForm: /** @type {HTMLFormElement} */ (el("room-create-form")),
      name: /** @type {HTMLInputElement} */ (el("room-name")),
      joinForm: /** @type {HTMLFormElement} */ (el("room-join-form")),
      joinName: /** @type {HTMLInputElement} */ (el("room-join-name")),
      isPrivate: /** @type {HTMLInputElement} */ (el("room-private")),
      error: el("rooms-error"),
      current: el("room-current"),
      title: el("room-title"),
      state: el("room-state"),
      messages: el("room-messages"),
      empty: el("room-empty"),
      sendForm: /** @type {HTMLFormElement} */ (el("room-send-form")),
      text: /** @type {HTMLInputElement} */ (el("room-text")),
      send: /** @type {HTMLButtonElement} */ (el("room-send")),
      membersForm: /** @type {HTMLFormElement} */ (el("room-members-form")),
      member: /** @type {HTMLInputElement} */ (el("room-member")),
      membersInfo: el("room-members-info"),
      you: el("room-you"),
    };
    /** @type {JoinedRoom | null} */
    this.joined = null;
    /** @type {ChatMessage[]} */
    this.shown = [];
    /** @type {Room[]} */
    this.rooms = [];
    this.generation = 0;
    /**
     * Bumped by hide() (sign-out): an answer to a request of the session
     * before is dropped, never shown to whoever signs in next in this tab.
     */
    this.epoch = 0;
    /** The last room list could not be read (its error is shown). */
    this.listFailed = false;
    this.pending = new PendingLine();
    this.ui.refresh.addEventListener("click", () => void this.refresh());
    this.ui.createForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.create();
    });
    this.ui.joinForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = this.ui.joinName.value.trim();
      if (!validRoomName(name)) {
        this.setError("Room names are 1 to 64 characters: letters, digits, _ and -.");
        return;
      }
      void this.join(name);
    });
    this.ui.sendForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.sendTyped();
    });
    this.ui.membersForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.addMember();
    });
  }

  show() {
    this.ui.view.hidden = false;
    this.ui.you.textContent = this.self();
    void this.refresh();
  }

  hide() {
    this.epoch += 1;
    this.listFailed = false;
    this.leave();
    this.ui.view.hidden = true;
    this.ui.list.replaceChildren();
    this.rooms = [];
    this.setError("");
    this.pending = new PendingLine();
    for (const input of [this.ui.name, this.ui.joinName, this.ui.text, this.ui.member]) input.value = "";
    this.ui.membersInfo.textContent = "";
    this.ui.you.textContent = "";
    // Hidden is not gone: the lines stay in the DOM for whoever signs in next.
    this.shown = [];
    this.renderMessages();
    this.ui.title.textContent = "";
    this.ui.state.textContent = "";
  }

  /** @param {string} text */
  setError(text) {
    this.ui.error.textContent = text;
    this.ui.error.hidden = !text;
  }

  async refresh() {
    const epoch = this.epoch;
    try {
      const rooms = await this.client.list();
      if (epoch !== this.epoch) return;
      this.rooms = rooms;
      this.renderList();
      if (this.listFailed) this.setError("");
      this.listFailed = false;
    } catch (err) {
      if (epoch !== this.epoch) return;
      this.listFailed = true;
      this.setError(`Could not list rooms: ${describe(err)}`);
    }
  }

  /**
   * The page's notification connection is live, so the API answers: a room
   * list that failed (the API down when the page opened) is read again.
   */
  live() {
    if (this.listFailed && !this.ui.view.hidden) void this.refresh();
  }

  renderList() {
    const items = this.rooms.map((room) => {
      const li = this.doc.createElement("li");
      li.className = "room";
      const name = this.doc.createElement("span");
      name.className = "room-name";
      name.textContent = room.room;
      li.append(name);
      if (room.private) {
        const tag = this.doc.createElement("span");
        tag.className = "tag";
        tag.textContent = "private";
        li.append(tag);
      }
      const join = this.doc.createElement("button");
      join.type = "button";
      join.textContent = this.joined?.room === room.room ? "Joined" : "Join";
      join.disabled = this.joined?.room === room.room;
      join.setAttribute("aria-label", `Join ${room.room}`);
      join.addEventListener("click", () => void this.join(room.room));
      li.append(join);
      return li;
    });
    this.ui.list.replaceChildren(...items);
  }

  async create() {
    const name = this.ui.name.value.trim();
    if (!validRoomName(name)) {
      this.setError("Room names are 1 to 64 characters: letters, digits, _ and -.");
      return;
    }
    const epoch = this.epoch;
    try {
      await this.client.create(name, this.ui.isPrivate.checked);
      if (epoch !== this.epoch) return;
      this.ui.name.value = "";
      this.setError("");
      await this.refresh();
      if (epoch !== this.epoch) return;
      await this.join(name);
    } catch (err) {
      if (epoch !== this.epoch) return;
      this.setError(err instanceof ApiError && err.status === 409 ? `There is already a room called ${name}.` : `Could not create ${name}: ${describe(err)}`);
    }
  }

  /**
   * Join `room`: new token, new connection, history, then live messages.
   * A connection that drops is joined again by itself (`rejoin`: what is
   * shown stays, the history is merged again), with the notification
   * connection's backoff (1 s doubling to 30 s, full jitter), for as long as
   * the token API does not refuse the room (403, 404) or the session.
   * @param {string} room  @param {{rejoin?: boolean}} [options]
   */
  async join(room, { rejoin = false } = {}) {
    this.#drop();
    const generation = this.generation;
    this.setError("");
    this.ui.current.hidden = false;
    this.ui.title.textContent = room;
    this.ui.send.disabled = true;
    if (!rejoin) {
      this.rejoinAttempt = 0;
      this.ui.state.textContent = "Joining…";
      this.ui.state.dataset.state = "joining";
      this.shown = [];
      this.renderMessages();
    }
    let token;
    try {
      token = await this.client.token(room);
    } catch (err) {
      if (generation !== this.generation) return;
      const refused = err instanceof ApiError && (err.status === 403 || err.status === 404 || err.unauthorized);
      if (rejoin && !refused) {
        this.#scheduleRejoin(room, generation, describe(err));
        return;
      }
      this.ui.current.hidden = true;
      if (err instanceof ApiError && err.status === 403) this.setError(`You are not a member of ${room}.`);
      else if (err instanceof ApiError && err.status === 404) this.setError(`There is no room called ${room}.`);
      else this.setError(`Could not join ${room}: ${describe(err)}`);
      return;
    }
    if (generation !== this.generation) return;
    this.joined = new JoinedRoom({
      room,
      token,
      connect: this.connect,
      onMessage: (message) => {
        if (generation !== this.generation) return;
        this.shown = mergeMessages(this.shown, [message]);
        this.renderMessages();
      },
      onState: (state, detail = "") => {
        if (generation !== this.generation) return;
        if (state === "closed") {
          this.#scheduleRejoin(room, generation, detail);
          return;
        }
        this.ui.state.dataset.state = state === "live" ? "live" : "closed";
        this.ui.state.textContent = state === "live" ? "Live" : `Disconnected: ${detail}. Join again to reconnect.`;
        this.ui.send.disabled = state !== "live";
        if (state === "live") {
          this.rejoinAttempt = 0;
          void this.loadHistory(room, generation);
        }
      },
    });
    this.renderList();
    this.renderMembers(room);
  }

  /** History after subscribing, so nothing falls between the two; merged by id. @param {string} room @param {number} generation */
  async loadHistory(room, generation) {
    try {
      const history = await this.client.history(room);
      if (generation !== this.generation) return;
      this.shown = mergeMessages(this.shown, history);
      this.renderMessages();
    } catch (err) {
      if (generation === this.generation) this.setError(`Could not load the history of ${room}: ${describe(err)}`);
    }
  }

  leave() {
    this.#drop();
    this.ui.current.hidden = true;
  }

  /** Ends the room's connection and any pending rejoin; later callbacks are stale. */
  #drop() {
    this.generation += 1;
    if (this.rejoinTimer !== null) {
      this.timers.clear(this.rejoinTimer);
      this.rejoinTimer = null;
    }
    this.joined?.leave();
    this.joined = null;
  }

  /**
   * The room's connection is gone: join it again after the backoff.
   * @param {string} room  @param {number} generation  @param {string} detail  why
   */
  #scheduleRejoin(room, generation, detail) {
    const delay = backoffDelay(this.rejoinAttempt, { random: this.random });
    this.rejoinAttempt += 1;
    this.ui.state.dataset.state = "reconnecting";
    this.ui.state.textContent = `Reconnecting… (${detail})`;
    this.ui.send.disabled = true;
    this.rejoinTimer = this.timers.set(() => {
      this.rejoinTimer = null;
      if (generation === this.generation) void this.join(room, { rejoin: true });
    }, delay);
  }

  async sendTyped() {
    const text = this.ui.text.value.trim();
    if (!text || this.joined === null) return;
    const cid = this.pending.cidFor(text);
    try {
      await this.joined.send(text, cid);
      this.pending.sent();
      this.ui.text.value = "";
    } catch (err) {
      this.setError(`Not sent: ${describe(err)}`);
    }
  }

  /** @param {string} room */
  renderMembers(room) {
    const info = this.rooms.find((r) => r.room === room);
    const owner = info !== undefined && info.owner === this.self();
    this.ui.membersForm.hidden = !owner;
    const members = info?.members;
    this.ui.membersInfo.textContent = members ? membersLine(members, null) : "";
    if (!members || members.length === 0) return;
    const generation = this.generation;
    this.client.presence(members).then(
      (presence) => {
        if (generation === this.generation && this.joined?.room === room) {
          this.ui.membersInfo.textContent = membersLine(members, presence);
        }
      },
      () => {}, // presence is a nicety: the count alone stays
    );
  }

  async addMember() {
    const room = this.joined?.room;
    const user = this.ui.member.value.trim();
    if (!room || !user) return;
    const epoch = this.epoch;
    try {
      const updated = await this.client.addMember(room, user);
      if (epoch !== this.epoch) return;
      this.ui.member.value = "";
      this.rooms = this.rooms.map((r) => (r.room === room ? updated : r));
      this.renderMembers(room);
      this.setError("");
    } catch (err) {
      if (epoch === this.epoch) this.setError(`Could not add ${user}: ${describe(err)}`);
    }
  }

  renderMessages() {
    const self = this.self();
    const items = this.shown.map((m) => {
      const li = this.doc.createElement("li");
      li.className = "chat-line";
      li.dataset.id = m.id;
      li.dataset.sender = m.sender;
      const who = this.doc.createElement("span");
      who.className = "chat-sender";
      who.textContent = senderLabel(m.sender, self);
      who.title = m.sender;
      // Each part isolated, its direction from its own text: a right-to-left
      // message cannot reorder the sender's name beside it.
      who.dir = "auto";
      const text = this.doc.createElement("span");
      text.className = "chat-text";
      text.textContent = m.text;
      text.dir = "auto";
      li.append(who, text);
      return li;
    });
    this.ui.messages.replaceChildren(...items);
    this.ui.empty.hidden = items.length > 0;
    this.ui.messages.lastElementChild?.scrollIntoView?.({ block: "nearest" });
  }
}

/** @param {unknown} err */
function describe(err) {
  return err instanceof Error ? err.message : String(err);
}
