import assert from "node:assert/strict";
import { test } from "node:test";

import { AuthError } from "../src/cognito.js";
import { Session } from "../src/session.js";

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const jwt = (claims) => `${b64url({ alg: "RS256" })}.${b64url(claims)}.sig`;

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

function fakeCognito({ refreshFails = null } = {}) {
  const calls = [];
  return {
    calls,
    async signIn(email) {
      calls.push("signIn");
      return { idToken: jwt({ sub: "s1", email, exp: 1000 }), accessToken: "a", refreshToken: "r", expiresAt: 1_000_000 };
    },
    async refresh(refreshToken) {
      calls.push(`refresh:${refreshToken}`);
      if (refreshFails) throw refreshFails;
      return { idToken: jwt({ sub: "s1", exp: 5000 }), accessToken: "a2", refreshToken, expiresAt: 5_000_000 };
    },
    async signOut() {
      calls.push("signOut");
    },
  };
}

test("tokens live in the given storage (sessionStorage in the page) and survive a reload", async () => {
  const storage = new MemoryStorage();
  const cognito = fakeCognito();
  const session = new Session({ cognito, storage, now: () => 0 });
  await session.signIn("a@example.com", "pw");
  assert.equal(session.current.sub, "s1");
  assert.equal(session.current.email, "a@example.com");
  const again = new Session({ cognito, storage, now: () => 0 });
  assert.equal(again.signedIn, true);
  assert.equal(await again.idToken(), session.current.idToken);
});

test("an ID token close to expiry is refreshed once, even for concurrent callers", async () => {
  const cognito = fakeCognito();
  const session = new Session({ cognito, storage: new MemoryStorage(), now: () => 950_000 });
  await session.signIn("a@example.com", "pw");
  const [one, two] = await Promise.all([session.idToken(), session.idToken()]);
  assert.equal(one, two);
  assert.deepEqual(cognito.calls, ["signIn", "refresh:r"]);
  assert.equal(session.current.expiresAt, 5_000_000);
});

test("a dead refresh token ends the session as unauthorized", async () => {
  let expired = null;
  const cognito = fakeCognito({ refreshFails: new AuthError("NotAuthorizedException", "Your session has expired. Sign in again.") });
  const storage = new MemoryStorage();
  const session = new Session({ cognito, storage, now: () => 0, onExpired: (err) => (expired = err) });
  await session.signIn("a@example.com", "pw");
  await assert.rejects(session.idToken(true), (err) => err.unauthorized === true);
  assert.equal(expired?.unauthorized, true);
  assert.equal(session.signedIn, false);
  assert.equal(storage.getItem("iotnotify.session"), null);
});

test("a network failure during refresh keeps the session (the next attempt may work)", async () => {
  const cognito = fakeCognito({ refreshFails: new AuthError("NetworkError", "Cannot reach") });
  const session = new Session({ cognito, storage: new MemoryStorage(), now: () => 0 });
  await session.signIn("a@example.com", "pw");
  await assert.rejects(session.idToken(true), { code: "NetworkError" });
  assert.equal(session.signedIn, true);
});

test("sign-out forgets the tokens at once and tells Cognito", async () => {
  const cognito = fakeCognito();
  const storage = new MemoryStorage();
  const session = new Session({ cognito, storage, now: () => 0 });
  await session.signIn("a@example.com", "pw");
  session.signOut();
  assert.equal(session.signedIn, false);
  assert.equal(storage.getItem("iotnotify.session"), null);
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(cognito.calls.includes("signOut"));
  await assert.rejects(session.idToken(), { code: "NotSignedIn" });
});

// A shared computer: alice's ID token is being refreshed (2 min before it
// expires, or after a 401) when she signs out, and bob signs in in the tab.
// The refresh's answer used to be stored as the session: alice back in
// sessionStorage after she signed out (a reload signed her in again), or in
// place of bob's session, so bob's page read alice's notifications.

function pendingRefreshCognito() {
  const refreshes = [];
  return {
    refreshes,
    async signIn(email) {
      const sub = email.split("@")[0];
      return { idToken: jwt({ sub, email, exp: 1000 }), accessToken: `access-${sub}`, refreshToken: `refresh-${sub}`, expiresAt: 1_000_000 };
    },
    refresh(refreshToken) {
      return new Promise((resolve) => {
        refreshes.push(() => resolve({ idToken: jwt({ sub: "alice", email: "alice@example.com", exp: 5000 }), accessToken: "access-alice-2", refreshToken, expiresAt: 5_000_000 }));
      });
    },
    async signOut() {},
  };
}

test("a refresh answered after sign-out does not sign the person in again", async () => {
  const storage = new MemoryStorage();
  const cognito = pendingRefreshCognito();
  const session = new Session({ cognito, storage, now: () => 0 });
  await session.signIn("alice@example.com", "pw");
  const pending = session.idToken(true);
  session.signOut();
  cognito.refreshes[0]();
  await assert.rejects(pending, (err) => err instanceof AuthError && err.code === "NotSignedIn");
  assert.equal(session.current, null);
  assert.equal(storage.getItem("iotnotify.session"), null);
  assert.equal(new Session({ cognito, storage, now: () => 0 }).signedIn, false);
});

test("a refresh of the person before never replaces the session of the person signed in now", async () => {
  const storage = new MemoryStorage();
  const cognito = pendingRefreshCognito();
  const session = new Session({ cognito, storage, now: () => 0 });
  await session.signIn("alice@example.com", "pw");
  const pending = session.idToken(true);
  session.signOut();
  await session.signIn("bob@example.com", "pw");
  cognito.refreshes[0]();
  await assert.rejects(pending);
  assert.equal(session.current.sub, "bob");
  assert.equal(JSON.parse(storage.getItem("iotnotify.session")).sub, "bob");
  // and bob's own token is not alice's refreshed one
  assert.equal(session.current.accessToken, "access-bob");
  assert.equal(await session.idToken(), session.current.idToken);
});
