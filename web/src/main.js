// The page: sign-in, the live connection, toasts, the unread list and OS
// notifications. Everything a notification carries is shown with
// textContent, never as HTML: titles and bodies come from other people.

import mqtt from "mqtt";

import { Api, ApiError, forEachMissed } from "./api.js";
import { backoffDelay } from "./backoff.js";
import { AuthError, CognitoClient, cognitoEndpoint, normalizeEmail, passwordRules } from "./cognito.js";
import { CATCH_UP_FAILED, Connection, Status } from "./connection.js";
import { Feed } from "./feed.js";
import { ResumeWatch } from "./resume.js";
import { RoomsView } from "./rooms.js";
import { Session } from "./session.js";
import { clampText } from "./text.js";

const TOAST_MS = 8000;
const MAX_TOASTS = 4;
const READ_KEY_PREFIX = "iotnotify.read.";
// Bodies longer than this are clamped in the list ("Show more") and in toasts.
const LIST_CLAMP = { maxChars: 320, maxLines: 6 };
const TOAST_CLAMP = { maxChars: 200, maxLines: 3 };
const TYPE_CLAMP = { maxChars: 40, maxLines: 1 };

/** @template {HTMLElement} T @param {string} id @returns {T} */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

const ui = {
  status: $("status"),
  statusLabel: $("status-label"),
  account: $("account"),
  whoami: $("whoami"),
  enableOs: /** @type {HTMLButtonElement} */ ($("enable-os")),
  signOut: /** @type {HTMLButtonElement} */ ($("sign-out")),
  bootError: $("boot-error"),
  authView: $("auth-view"),
  authTitle: $("auth-title"),
  authForm: /** @type {HTMLFormElement} */ ($("auth-form")),
  email: /** @type {HTMLInputElement} */ ($("email")),
  password: /** @type {HTMLInputElement} */ ($("password")),
  passwordRules: $("password-rules"),
  codeRow: $("code-row"),
  code: /** @type {HTMLInputElement} */ ($("code")),
  authError: $("auth-error"),
  authInfo: $("auth-info"),
  authSubmit: /** @type {HTMLButtonElement} */ ($("auth-submit")),
  authSwitch: /** @type {HTMLButtonElement} */ ($("auth-switch")),
  feedView: $("feed-view"),
  connNotice: $("conn-notice"),
  refusedNotice: $("refused-notice"),
  unreadCount: $("unread-count"),
  markAll: /** @type {HTMLButtonElement} */ ($("mark-all")),
  empty: $("feed-empty"),
  unreadList: $("unread-list"),
  readSection: $("read-section"),
  readCount: $("read-count"),
  readList: $("read-list"),
  toasts: $("toasts"),
};

/** @type {"signin" | "signup" | "confirm"} */
let authMode = "signin";
/** @type {Session} */
let session;
/** @type {Api} */
let api;
/** @type {Connection | null} */
let connection = null;
/** @type {RoomsView | null} */
let rooms = null;
const resumeWatch = new ResumeWatch({ onResume: (reason) => connection?.check(reason) });
/** The server's clock minus this browser's, in ms, from each token answer's `serverTime`. */
let serverClockOffsetMs = 0;
const serverNow = () => Date.now() + serverClockOffsetMs;
let feed = new Feed({ now: serverNow });
let caughtUpOnce = false;
/** Ids whose long body the person expanded ("Show more"); survives re-renders. */
const expanded = new Set();
/** OS notifications this page showed and that may still be on the screen. */
/** @type {Set<Notification>} */
const osShown = new Set();

boot().catch((err) => showBootError(`The page could not start: ${message(err)}`));

async function boot() {
  const config = await loadConfigUntilItAnswers();
  const cognito = new CognitoClient({ endpoint: cognitoEndpoint(config), clientId: config.userPoolClientId });
  session = new Session({ cognito });
  api = new Api({ baseUrl: config.apiUrl, auth: session });
  rooms = new RoomsView({ api, connect: (url, options) => mqtt.connect(url, options), self: () => session.current?.sub ?? "" });
  wireAuthForm(cognito);
  wireFeed();
  ui.signOut.addEventListener("click", () => signOut(""));
  ui.enableOs.addEventListener("click", enableOsNotifications);
  // `online` also fires on a network change while online: Connection checks then.
  window.addEventListener("online", () => connection?.setOnline(true));
  window.addEventListener("offline", () => connection?.setOnline(false));
  if (session.signedIn) enterFeed();
  else showAuth("signin");
}

/**
 * config.json, asked again with backoff (1 s doubling to 30 s, full jitter)
 * until it answers: a tab opened or restored while the server is away (the
 * local stack restarting, a network that is not up yet) starts by itself
 * once it is back, instead of staying on an error until reloaded.
 */
async function loadConfigUntilItAnswers() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const config = await loadConfig();
      ui.bootError.hidden = true;
      return config;
    } catch (err) {
      showBootError(`The page could not start: ${message(err)}. Retrying…`);
      await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt)));
    }
  }
}

/** @returns {Promise<{apiUrl: string, region: string, userPoolClientId: string, cognitoEndpoint?: string}>} */
async function loadConfig() {
  const url = new URL("config.json", document.baseURI);
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (err) {
    throw new Error(`cannot fetch ${url.pathname} (${message(err)})`);
  }
  if (!response.ok) throw new Error(`${url.pathname} answered ${response.status}`);
  const config = await response.json();
  for (const key of ["apiUrl", "region", "userPoolClientId"]) {
    if (typeof config[key] !== "string" || !config[key]) throw new Error(`${url.pathname} has no ${key}`);
  }
  return config;
}

// --- sign-in / sign-up ---------------------------------------------------------

/** @param {"signin" | "signup" | "confirm"} mode */
function showAuth(mode, info = "") {
  authMode = mode;
  ui.feedView.hidden = true;
  ui.account.hidden = true;
  ui.authView.hidden = false;
  setStatus(Status.OFFLINE, "signed out");
  const titles = { signin: "Sign in", signup: "Create an account", confirm: "Confirm your e-mail" };
  ui.authTitle.textContent = titles[mode];
  ui.authSubmit.textContent = { signin: "Sign in", signup: "Create account", confirm: "Confirm" }[mode];
  ui.authSwitch.textContent = mode === "signin" ? "Create an account instead" : "I already have an account";
  ui.password.autocomplete = mode === "signup" ? "new-password" : "current-password";
  ui.passwordRules.textContent = passwordRules();
  ui.passwordRules.hidden = mode !== "signup";
  ui.codeRow.hidden = mode !== "confirm";
  ui.code.required = mode === "confirm";
  ui.authError.textContent = "";
  ui.authInfo.textContent = info;
  (mode === "confirm" ? ui.code : ui.email.value ? ui.password : ui.email).focus();
}

/** @param {CognitoClient} cognito */
function wireAuthForm(cognito) {
  ui.authSwitch.addEventListener("click", () => showAuth(authMode === "signin" ? "signup" : "signin"));
  ui.authForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = normalizeEmail(ui.email.value);
    const password = ui.password.value;
    ui.authError.textContent = "";
    if (!email || !password) {
      ui.authError.textContent = "Enter your e-mail address and password.";
      (email ? ui.password : ui.email).focus();
      return;
    }
    ui.authSubmit.disabled = true;
    ui.authForm.setAttribute("aria-busy", "true");
    try {
      if (authMode === "signup") {
        const { confirmed } = await cognito.signUp(email, password);
        if (!confirmed) {
          showAuth("confirm", `We sent a confirmation code to ${email}.`);
          return;
        }
      } else if (authMode === "confirm") {
        await cognito.confirmSignUp(email, ui.code.value.trim());
      }
      await session.signIn(email, password);
      ui.password.value = "";
      ui.code.value = "";
      enterFeed();
    } catch (err) {
      if (err instanceof AuthError && err.code === "UserNotConfirmedException" && authMode !== "confirm") {
        showAuth("confirm", err.message);
        return;
      }
      ui.authError.textContent = message(err);
      const field = authMode === "confirm" ? ui.code : ui.password;
      field.select();
      field.focus();
    } finally {
      ui.authSubmit.disabled = false;
      ui.authForm.removeAttribute("aria-busy");
    }
  });
}

/** @param {string} reason shown on the sign-in form */
function signOut(reason) {
  connection?.stop();
  connection = null;
  rooms?.hide();
  resumeWatch.stop();
  showConnectionProblem("");
  showRefused(new Map());
  session.signOut();
  clearToasts();
  closeOsNotifications();
  feed = new Feed({ now: serverNow });
  caughtUpOnce = false;
  expanded.clear();
  ui.whoami.textContent = "";
  render();
  showAuth("signin", reason);
}

// --- the feed ----------------------------------------------------------------------

function enterFeed() {
  const current = session.current;
  if (current === null) return;
  ui.authView.hidden = true;
  ui.bootError.hidden = true;
  ui.feedView.hidden = false;
  ui.account.hidden = false;
  ui.whoami.textContent = current.email;
  updateOsButton();
  feed = new Feed({ readIds: loadReadIds(), now: serverNow });
  caughtUpOnce = false;
  render();
  connection = new Connection({
    fetchToken: async () => {
      const token = await api.token();
      if (typeof token.serverTime === "number") serverClockOffsetMs = token.serverTime - Date.now();
      return token;
    },
    connect: (url, options) => mqtt.connect(url, options),
    catchUp,
    onMessage: (note, topic) => receive([note], "live", isOwnTopic(topic)),
    onStatus: (status, detail) => {
      setStatus(status, detail);
      if (status === Status.LIVE) {
        rooms?.live();
        // Live, but what came while the page was away is not loaded yet: say so.
        showConnectionProblem(
          detail.startsWith(CATCH_UP_FAILED)
            ? `Live, but what arrived while this page was away could not be loaded yet (${detail.slice(CATCH_UP_FAILED.length).replace(/^ \(|\); retrying$/g, "")}). Retrying.`
            : "",
        );
      }
      else if (status === Status.OFFLINE && connection?.stopped && connection.refused.size) showConnectionProblem(detail);
    },
    onFatal: () => signOut("Your session has expired. Sign in again."),
    onRefused: showRefused,
    onUnreachable: (url) => showConnectionProblem(unreachableHint(url)),
    onTokenFailing: (err) => showConnectionProblem(tokenHint(err)),
    log: (text) => console.info(`iotnotify: ${text}`),
  });
  connection.start();
  resumeWatch.start();
  rooms?.show();
}

/**
 * Names the topics the server refused: the page keeps the rest live.
 * @param {Map<string, string>} refused  topic -> why
 */
function showRefused(refused) {
  if (refused.size === 0) {
    ui.refusedNotice.hidden = true;
    ui.refusedNotice.textContent = "";
    return;
  }
  const list = [...refused].map(([topic, why]) => `${topic} (${why})`).join("; ");
  ui.refusedNotice.textContent =
    `Not receiving ${list}. Its token names a topic its policy does not allow: ` +
    "the deployment needs fixing. Everything else keeps arriving.";
  ui.refusedNotice.hidden = false;
}

/** @param {string} text  empty hides it */
function showConnectionProblem(text) {
  ui.connNotice.textContent = text;
  ui.connNotice.hidden = !text;
}

/**
 * Why the page has no connection token, in words: the API is unreachable,
 * or it answers with an error (its JSON message).
 * @param {unknown} err
 */
function tokenHint(err) {
  if (err instanceof ApiError && err.status === 0) {
    return `Cannot reach the notification service (${err.message}): is the server running and the address right? Retrying meanwhile.`;
  }
  const status = err instanceof ApiError ? `${err.status}: ` : "";
  return `The notification service did not give this page a connection (${status}${message(err)}). Retrying meanwhile.`;
}

/**
 * Why a WebSocket never opened, as far as a page can tell (browsers do not
 * say): for wss, most often a certificate this browser does not trust.
 * @param {string} url
 */
function unreachableHint(url) {
  let where = url;
  try {
    const parsed = new URL(url);
    where = `${parsed.protocol === "wss:" ? "https:" : "http:"}//${parsed.host}`;
    if (parsed.protocol === "wss:") {
      return (
        `Cannot open a secure connection to ${where}. If it uses a private certificate authority ` +
        "(as “iotnotify local --tls” does: the CA file it prints, “caFile” in its state file), " +
        "this browser must trust that CA: import the file as a certificate authority in the browser's " +
        "certificate settings (or the system's), then reload. Retrying meanwhile."
      );
    }
  } catch {
    // not a URL: say it as it is
  }
  return `Cannot reach ${where}: is the server running and the address right? Retrying meanwhile.`;
}

async function catchUp() {
  // The feed is the signed-in person's: sign-out (and the next sign-in in
  // this tab) replaces it. A read answered after that belongs to a session
  // that is over and must never land in the next person's list.
  const mine = feed;
  /** @type {import("./feed.js").Envelope[]} */
  const added = [];
  // Not from feed.lastId: an older id can reach the inbox later (a fan-out's
  // id, clock skew); the feed drops what the look-back returns again. Page by
  // page into the feed (it keeps the newest maxItems), so a large inbox is
  // never held whole; announced once, at the end.
  await forEachMissed(
    api,
    mine.catchUpSince(),
    (items) => {
      if (feed === mine) added.push(...mine.add(items));
    },
    { stillCurrent: () => feed === mine },
  );
  if (feed !== mine) return;
  announce(
    added.filter((note) => mine.notes.has(note.id)),
    caughtUpOnce ? "missed" : "history",
  );
  caughtUpOnce = true;
}

/**
 * Whether `topic` is the signed-in user's own notifications topic
 * (`{app}/{stage}/user/{userId}/notifications`, DESIGN.md "Topics"), the one
 * the inbox mirrors; broadcast and channel topics are not.
 * @param {string} topic
 */
function isOwnTopic(topic) {
  const levels = topic.split("/");
  return (
    levels.length === 5 && levels[2] === "user" && levels[3] === session.current?.sub && levels[4] === "notifications"
  );
}

/**
 * @param {unknown[]} items
 * @param {"live" | "missed" | "history"} source
 * @param {boolean} [own]  from the user's own topic or the inbox
 */
function receive(items, source, own = true) {
  announce(feed.add(items, { own }), source);
}

/**
 * Shows what was just added to the feed: the list, toasts, OS notifications.
 * @param {import("./feed.js").Envelope[]} added  new to the feed, oldest first
 * @param {"live" | "missed" | "history"} source
 */
function announce(added, source) {
  // Render even when everything added was read before (a reload after "Mark
  // all as read"): the read list is rebuilt from the inbox, not from storage.
  if (added.length) render();
  const fresh = added.filter((note) => !feed.isRead(note.id));
  if (fresh.length === 0) return;
  if (source === "history") {
    // A new tab: no toast (or pop-up) per old item, one line saying there is
    // something; a background tab a browser restores must not pop up old news.
    const summary = { title: `${fresh.length} unread notification${fresh.length === 1 ? "" : "s"}`, body: "" };
    toast(summary, null);
    if (document.visibilityState === "hidden") notifyOs([{ ...summary, id: "" }]);
    return;
  }
  for (const note of fresh.slice(-MAX_TOASTS)) toast(note, note.id);
  if (document.visibilityState === "hidden") notifyOs(fresh);
}

function wireFeed() {
  ui.markAll.addEventListener("click", () => {
    if (feed.markAllRead().length) {
      saveReadIds();
      clearToasts();
      render();
    }
    ui.markAll.focus();
  });
  const onMarkRead = (/** @type {Event} */ event) => {
    const button = /** @type {HTMLElement} */ (event.target).closest("button[data-read-id]");
    if (!(button instanceof HTMLButtonElement)) return;
    const item = button.closest("li");
    const next = item?.nextElementSibling ?? item?.previousElementSibling;
    markRead(button.dataset.readId ?? "");
    // Keep the keyboard where the person was: the next unread item, else the heading.
    const target = next?.querySelector("button[data-read-id]");
    if (target instanceof HTMLButtonElement && target.isConnected) target.focus();
    else ui.markAll.focus();
  };
  ui.unreadList.addEventListener("click", onMarkRead);
  document.addEventListener("visibilitychange", () => {
    const hidden = document.visibilityState === "hidden";
    // Back after a long hidden spell: a ping proves the socket (ResumeWatch);
    // not live: no reason to wait for the backoff timer.
    resumeWatch.setHidden(hidden);
    if (!hidden && connection && connection.status !== Status.LIVE) connection.check("the tab is visible again");
  });
}

/** @param {string} id */
function markRead(id) {
  if (!feed.markRead(id)) return;
  saveReadIds();
  for (const el of ui.toasts.querySelectorAll(`[data-id="${CSS.escape(id)}"]`)) el.remove();
  render();
}

function render() {
  const unread = feed.unread();
  const read = feed.list().filter((note) => feed.isRead(note.id));
  ui.unreadList.replaceChildren(...unread.map((note) => noteItem(note, true)));
  ui.readList.replaceChildren(...read.map((note) => noteItem(note, false)));
  ui.unreadCount.textContent = String(unread.length);
  ui.readCount.textContent = String(read.length);
  ui.readSection.hidden = read.length === 0;
  ui.empty.hidden = unread.length > 0;
  ui.empty.textContent = read.length ? "All caught up." : "Nothing yet. New notifications appear here and as toasts.";
  ui.markAll.disabled = unread.length === 0;
  document.title = unread.length ? `(${unread.length}) iotnotify` : "iotnotify";
}

/** @param {import("./feed.js").Envelope} note  @param {boolean} unread */
function noteItem(note, unread) {
  const li = document.createElement("li");
  li.className = "note";
  li.dataset.id = note.id;
  li.dataset.type = note.type;
  const title = document.createElement("h3");
  title.className = "note-title";
  title.textContent = note.title;
  // Other people's text is bidi-isolated with its own direction (dir=auto),
  // so right-to-left text cannot reorder what is shown around it.
  title.dir = "auto";
  li.append(title);
  if (note.body) li.append(noteBody(note));
  const meta = document.createElement("p");
  meta.className = "note-meta";
  const time = document.createElement("time");
  if (note.ts) time.dateTime = note.ts;
  time.textContent = formatTime(note.ts);
  meta.append(time);
  // A type is a short label ("game.turn") but the envelope does not bound it: one line of it.
  if (note.type !== "notification") meta.append(` · ${clampText(note.type, TYPE_CLAMP).text}`);
  li.append(meta);
  if (unread) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "mark-read";
    button.dataset.readId = note.id;
    button.textContent = "Mark as read";
    button.setAttribute("aria-label", `Mark “${note.title}” as read`);
    li.append(button);
  }
  return li;
}

/**
 * The body, clamped when long, with a "Show more" / "Show less" toggle.
 * @param {import("./feed.js").Envelope} note
 */
function noteBody(note) {
  const wrap = document.createElement("div");
  wrap.className = "note-body-wrap";
  const body = document.createElement("p");
  body.className = "note-body";
  body.id = `body-${note.id}`;
  body.dir = "auto";
  wrap.append(body);
  const short = clampText(note.body, LIST_CLAMP);
  if (!short.clamped) {
    body.textContent = note.body;
    return wrap;
  }
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "link more";
  toggle.setAttribute("aria-controls", body.id);
  const show = (/** @type {boolean} */ full) => {
    body.textContent = full ? note.body : short.text;
    body.classList.toggle("expanded", full);
    toggle.textContent = full ? "Show less" : "Show more";
    toggle.setAttribute("aria-expanded", String(full));
  };
  toggle.addEventListener("click", () => {
    const full = !expanded.has(note.id);
    if (full) expanded.add(note.id);
    else expanded.delete(note.id);
    show(full);
  });
  show(expanded.has(note.id));
  wrap.append(toggle);
  return wrap;
}

/** @param {string} ts */
function formatTime(ts) {
  const date = new Date(ts);
  if (!ts || Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// --- toasts ------------------------------------------------------------------------

/** @param {{title: string, body: string}} note  @param {string | null} id */
function toast(note, id) {
  const el = document.createElement("div");
  el.className = "toast";
  if (id) el.dataset.id = id;
  const text = document.createElement("div");
  text.className = "toast-text";
  const title = document.createElement("p");
  title.className = "toast-title";
  title.textContent = note.title;
  title.dir = "auto";
  text.append(title);
  if (note.body) {
    const body = document.createElement("p");
    body.className = "toast-body";
    body.dir = "auto";
    body.textContent = clampText(note.body, TOAST_CLAMP).text;
    text.append(body);
  }
  el.append(text);
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.textContent = "×";
  close.setAttribute("aria-label", `Dismiss “${note.title}”`);
  close.addEventListener("click", () => el.remove());
  el.append(close);
  ui.toasts.append(el);
  while (ui.toasts.children.length > MAX_TOASTS) ui.toasts.firstElementChild?.remove();

  // Not while the pointer or keyboard is on it: people read at their own pace.
  let timer = setTimeout(() => el.remove(), TOAST_MS);
  const hold = () => clearTimeout(timer);
  const release = () => {
    clearTimeout(timer);
    timer = setTimeout(() => el.remove(), TOAST_MS / 2);
  };
  el.addEventListener("mouseenter", hold);
  el.addEventListener("focusin", hold);
  el.addEventListener("mouseleave", release);
  el.addEventListener("focusout", release);
}

function clearToasts() {
  ui.toasts.replaceChildren();
}

// --- OS notifications ------------------------------------------------------------

function osSupported() {
  return typeof window.Notification === "function";
}

function updateOsButton() {
  ui.enableOs.hidden = !osSupported() || Notification.permission !== "default";
}

/** Only ever called from the button's click: browsers want a user gesture. */
async function enableOsNotifications() {
  if (!osSupported()) return;
  try {
    await Notification.requestPermission();
  } catch (err) {
    console.warn(`iotnotify: notification permission request failed: ${message(err)}`);
  }
  updateOsButton();
  if (ui.enableOs.hidden) ui.signOut.focus();
}

/**
 * @param {{id: string, title: string, body: string}[]} notes  id "" for a
 *   summary: clicking it only focuses the tab
 */
function notifyOs(notes) {
  if (!osSupported() || Notification.permission !== "granted") return;
  for (const note of notes.slice(-MAX_TOASTS)) {
    try {
      const shown = new Notification(note.title, { body: clampText(note.body, TOAST_CLAMP).text, tag: note.id || "iotnotify-unread" });
      osShown.add(shown);
      shown.addEventListener("close", () => osShown.delete(shown));
      shown.addEventListener("click", () => {
        window.focus();
        markRead(note.id);
        shown.close();
      });
    } catch (err) {
      console.warn(`iotnotify: could not show an OS notification: ${message(err)}`);
    }
  }
}

/**
 * Takes this page's OS notifications off the screen (sign-out: on a shared
 * computer the next person must not read the last one's pop-ups).
 */
function closeOsNotifications() {
  for (const shown of osShown) {
    try {
      shown.close();
    } catch {
      // already gone
    }
  }
  osShown.clear();
}

// --- status and helpers ------------------------------------------------------------

/** @type {Record<string, string>} */
const STATUS_TEXT = {
  [Status.CONNECTING]: "Connecting…",
  [Status.LIVE]: "Live",
  [Status.RECONNECTING]: "Reconnecting…",
  [Status.OFFLINE]: "Offline",
};

/** @param {string} status  @param {string} [detail] */
function setStatus(status, detail = "") {
  ui.status.dataset.state = status;
  ui.statusLabel.textContent = STATUS_TEXT[status] ?? status;
  ui.status.title = detail;
}

function loadReadIds() {
  try {
    const raw = localStorage.getItem(READ_KEY_PREFIX + (session.current?.sub ?? ""));
    const ids = raw ? JSON.parse(raw) : [];
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

function saveReadIds() {
  // Only ids (no content, no tokens): which notifications this person has read.
  try {
    localStorage.setItem(READ_KEY_PREFIX + (session.current?.sub ?? ""), JSON.stringify(feed.readIdsToKeep()));
  } catch {
    // Storage full or disabled: read state then lasts as long as the tab.
  }
}

/** @param {string} text */
function showBootError(text) {
  ui.bootError.textContent = text;
  ui.bootError.hidden = false;
  ui.authView.hidden = true;
  ui.feedView.hidden = true;
}

/** @param {unknown} err */
function message(err) {
  return err instanceof Error ? err.message : String(err);
}
