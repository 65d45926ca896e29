// The signed-in session: Cognito tokens in sessionStorage (gone when the tab
// closes, never shared with other tabs through localStorage), refreshed
// shortly before the ID token expires.

import { AuthError, decodeJwt } from "./cognito.js";

const KEY = "iotnotify.session";
const REFRESH_MARGIN_MS = 2 * 60 * 1000;

/**
 * @typedef {import("./cognito.js").Tokens & {email: string, sub: string}} StoredSession
 */

export class Session {
  /**
   * @param {{cognito: import("./cognito.js").CognitoClient, storage?: Storage, now?: () => number,
   *          onExpired?: (err: unknown) => void}} options
   */
  constructor({ cognito, storage = globalThis.sessionStorage, now = Date.now, onExpired }) {
    this.cognito = cognito;
    this.storage = storage;
    this.now = now;
    this.onExpired = onExpired;
    /** @type {StoredSession | null} */
    this.current = this.#load();
    /** @type {Promise<string> | null} */
    this.refreshing = null;
  }

  #load() {
    try {
      const raw = this.storage.getItem(KEY);
      const value = raw ? JSON.parse(raw) : null;
      if (value && typeof value.idToken === "string" && typeof value.refreshToken === "string") return value;
    } catch {
      // A corrupt entry is the same as none.
    }
    return null;
  }

  /** @param {import("./cognito.js").Tokens} tokens  @param {string} email */
  #store(tokens, email) {
    const claims = decodeJwt(tokens.idToken);
    this.current = { ...tokens, email: String(claims.email ?? email), sub: String(claims.sub ?? "") };
    this.storage.setItem(KEY, JSON.stringify(this.current));
  }

  get signedIn() {
    return this.current !== null;
  }

  /** @param {string} email  @param {string} password */
  async signIn(email, password) {
    const tokens = await this.cognito.signIn(email, password);
    this.refreshing = null; // a refresh still on its way is the session before's
    this.#store(tokens, email);
  }

  /** Forgets the tokens now; tells Cognito too, without waiting or failing. */
  signOut() {
    const access = this.current?.accessToken;
    this.current = null;
    // A refresh still on its way belongs to this session: #refresh drops its answer.
    this.refreshing = null;
    this.storage.removeItem(KEY);
    if (access) this.cognito.signOut(access).catch(() => {});
  }

  /**
   * A valid ID token, refreshed when close to expiry or when `force`d (after a 401).
   * @param {boolean} [force]
   * @returns {Promise<string>}
   */
  async idToken(force = false) {
    const current = this.current;
    if (current === null) throw new AuthError("NotSignedIn", "Not signed in.");
    if (!force && current.expiresAt - this.now() > REFRESH_MARGIN_MS) return current.idToken;
    if (this.refreshing === null) {
      const refreshing = this.#refresh(current).finally(() => {
        // Only its own: a sign-in meanwhile may have started another.
        if (this.refreshing === refreshing) this.refreshing = null;
      });
      this.refreshing = refreshing;
    }
    return this.refreshing;
  }

  /**
   * Refreshes `current`'s tokens. If the session changed meanwhile (signed
   * out, or someone else signed in in this tab), the answer is dropped: it
   * must neither bring the person who left back into storage nor replace
   * the session of the person signed in now.
   * @param {StoredSession} current
   */
  async #refresh(current) {
    const stale = () => new AuthError("NotSignedIn", "Signed out while the session was being renewed.");
    try {
      const tokens = await this.cognito.refresh(current.refreshToken);
      if (this.current !== current) throw stale();
      this.#store(tokens, current.email);
      return tokens.idToken;
    } catch (err) {
      if (this.current !== current) throw err instanceof AuthError && err.code === "NotSignedIn" ? err : stale();
      if (err instanceof AuthError && err.code !== "NetworkError") {
        // The refresh token is dead: the API would say 401 anyway.
        this.current = null;
        this.storage.removeItem(KEY);
        const expired = Object.assign(new AuthError(err.code, err.message), { unauthorized: true });
        this.onExpired?.(expired);
        throw expired;
      }
      throw err;
    }
  }
}
