// Reconnect delays: exponential backoff with "full jitter" (a uniformly random
// delay up to the exponential ceiling), so that many tabs dropped by one
// outage do not all come back in the same second.

/**
 * @param {number} attempt  0 for the first retry
 * @param {{baseMs?: number, capMs?: number, minMs?: number, random?: () => number}} [options]
 * @returns {number} milliseconds to wait
 */
export function backoffDelay(attempt, { baseMs = 1000, capMs = 30000, minMs = 100, random = Math.random } = {}) {
  const exponent = Math.min(Math.max(0, attempt), 30);
  const ceiling = Math.min(capMs, baseMs * 2 ** exponent);
  return Math.max(minMs, Math.floor(random() * ceiling));
}
