import assert from "node:assert/strict";
import { test } from "node:test";

import { Api, ApiError, fetchMissed, forEachMissed } from "../src/api.js";

function auth() {
  const calls = [];
  return { calls, idToken: async (force = false) => { calls.push(force); return force ? "fresh" : "stale"; } };
}

test("GET /token sends the ID token and retries once with a refreshed one after 401", async () => {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push([url, init.headers.Authorization]);
    if (init.headers.Authorization === "stale") return new Response('{"error":"unauthorized","message":"expired"}', { status: 401 });
    return new Response(JSON.stringify({ url: "ws://x/mqtt", topics: ["a/b"], clientIdPrefix: "u.", keepalive: 600 }));
  };
  const source = auth();
  const api = new Api({ baseUrl: "http://api/prod/", auth: source, fetch });
  const token = await api.token();
  assert.equal(token.clientIdPrefix, "u.");
  assert.deepEqual(seen, [["http://api/prod/token", "stale"], ["http://api/prod/token", "fresh"]]);
});

test("a second 401 is an unauthorized ApiError", async () => {
  const fetch = async () => new Response('{"error":"unauthorized","message":"no"}', { status: 401 });
  const api = new Api({ baseUrl: "http://api", auth: auth(), fetch });
  await assert.rejects(api.token(), (err) => err instanceof ApiError && err.unauthorized && err.message === "no");
});

test("fetchMissed follows next until null and passes since and limit", async () => {
  const pages = {
    "": { notifications: [{ id: "1" }, { id: "2" }], next: "2" },
    2: { notifications: [{ id: "3" }], next: null },
  };
  const urls = [];
  const fetch = async (url) => {
    urls.push(url);
    const since = new URL(url).searchParams.get("since") ?? "";
    return new Response(JSON.stringify(pages[since]));
  };
  const api = new Api({ baseUrl: "http://api", auth: auth(), fetch });
  const found = await fetchMissed(api, null, { limit: 2 });
  assert.deepEqual(found.map((n) => n.id), ["1", "2", "3"]);
  assert.deepEqual(urls, ["http://api/notifications?limit=2", "http://api/notifications?since=2&limit=2"]);
});

test("fetchMissed stops at maxPages even if the server keeps saying next", async () => {
  let n = 0;
  const api = { notifications: async () => ({ notifications: [n], next: String(++n) }) };
  assert.equal((await fetchMissed(api, "0", { maxPages: 3 })).length, 3);
});

test("a large inbox is read to its end, page by page, so a new tab shows the newest notifications", async () => {
  // 7 days of a busy user's inbox (its TTL): 6,000 notifications, 60 pages.
  // A cap of 50 pages left the newest 1,000, what matters most, unread.
  const total = 6000;
  const id = (n) => String(n).padStart(8, "0");
  const api = {
    notifications: async (since, limit) => {
      const start = since === null ? 0 : Number(since);
      const items = Array.from({ length: Math.min(limit, total - start) }, (_, i) => ({ id: id(start + i + 1) }));
      const last = start + items.length;
      return { notifications: items, next: last < total ? id(last) : null };
    },
  };
  const pages = [];
  await forEachMissed(api, null, (items) => pages.push(items.length));
  assert.equal(pages.length, 60);
  assert.equal(pages.reduce((a, b) => a + b, 0), total);
  const found = await fetchMissed(api, id(5900));
  assert.equal(found.at(-1).id, id(total));
});

test("paging stops when the server's next does not move forward", async () => {
  const api = { notifications: async (since) => ({ notifications: [{ id: "x" }], next: since === null ? "5" : "3" }) };
  const pages = [];
  await forEachMissed(api, null, (items) => pages.push(items));
  assert.equal(pages.length, 2);
});
