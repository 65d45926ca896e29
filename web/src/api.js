// The iotnotify HTTP API, as the signed-in user: GET /token and
// GET /notifications. The ID token goes in `Authorization` as-is (API
// Gateway's Cognito authorizer and the local API both accept that).

/** An API failure; `status` 0 means the request never got an answer. */
export class ApiError extends Error {
  /** @param {number} status  @param {string} code  @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  /** The session is gone: only signing in again helps. */
  get unauthorized() {
    return this.status === 401;
  }
}

/**
 * @typedef {{idToken: (forceRefresh?: boolean) => Promise<string>}} TokenSource
 * @typedef {{endpoint: string, region: string, url: string, clientIdPrefix: string,
 *            topics: string[], credentials: object, keepalive: number,
 *            serverTime?: number}} TokenResponse  serverTime: the server's clock, epoch ms
 */

export class Api {
  /**
   * @param {{baseUrl: string, auth: TokenSource, fetch?: typeof fetch}} options
   */
  constructor({ baseUrl, auth, fetch: fetchImpl }) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.auth = auth;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * GET with the ID token; one retry with a refreshed token on 401.
   * @param {string} path  @param {Record<string, string | null | undefined>} [params]
   */
  async get(path, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value) query.set(key, value);
    const url = `${this.baseUrl}${path}${query.toString() ? `?${query}` : ""}`;
    for (let attempt = 0; ; attempt += 1) {
      const token = await this.auth.idToken(attempt > 0);
      let response;
      try {
        response = await this.fetch(url, { headers: { Authorization: token }, cache: "no-store" });
      } catch (err) {
        throw new ApiError(0, "network", `cannot reach ${path}: ${err instanceof Error ? err.message : err}`);
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

  /** @returns {Promise<TokenResponse>} */
  async token() {
    const data = await this.get("/token");
    if (!data || typeof data.url !== "string" || !Array.isArray(data.topics) || typeof data.clientIdPrefix !== "string") {
      throw new ApiError(502, "bad_token_response", "GET /token answered without url, topics or clientIdPrefix");
    }
    return data;
  }

  /**
   * One page of the inbox after `since` (exclusive), oldest first.
   * @param {string | null} since  @param {number} [limit]
   * @returns {Promise<{notifications: unknown[], next: string | null}>}
   */
  async notifications(since, limit = 100) {
    const data = await this.get("/notifications", { since, limit: String(limit) });
    return {
      notifications: Array.isArray(data?.notifications) ? data.notifications : [],
      next: typeof data?.next === "string" && data.next ? data.next : null,
    };
  }
}

/**
 * Everything after `since`, page by page (oldest first), following `next`
 * until the inbox is exhausted: `onPage` gets each page as it arrives, so a
 * large inbox (7 days of a busy user: thousands) is never held whole in
 * memory, and its newest notifications, the last pages, are always reached.
 * Stops when `next` does not move forward (a server bug would loop) and
 * after `maxPages`. `stillCurrent` is asked before each further page: once
 * it says false (the person signed out) no page is asked for with whoever's
 * token comes next.
 * @param {Pick<Api, "notifications">} api  @param {string | null} since
 * @param {(items: unknown[]) => void} onPage
 * @param {{maxPages?: number, limit?: number, stillCurrent?: () => boolean}} [options]
 * @returns {Promise<void>}
 */
export async function forEachMissed(api, since, onPage, { maxPages = 10_000, limit = 100, stillCurrent = () => true } = {}) {
  let cursor = since;
  for (let page = 0; page < maxPages; page += 1) {
    if (page > 0 && !stillCurrent()) return;
    const answer = await api.notifications(cursor, limit);
    onPage(answer.notifications);
    // ULIDs sort as strings: a next at or below the cursor would read the same pages again.
    if (answer.next === null || (cursor !== null && answer.next <= cursor)) return;
    cursor = answer.next;
  }
}

/**
 * Everything after `since`, following `next` until the inbox is exhausted,
 * in one array (see `forEachMissed` for a large inbox).
 * @param {Pick<Api, "notifications">} api  @param {string | null} since
 * @param {{maxPages?: number, limit?: number, stillCurrent?: () => boolean}} [options]
 * @returns {Promise<unknown[]>}
 */
export async function fetchMissed(api, since, options = {}) {
  /** @type {unknown[]} */
  const found = [];
  await forEachMissed(api, since, (items) => found.push(...items), options);
  return found;
}
