// When to ask "is the connection still there?" (Connection.check).
//
// A laptop that sleeps, or moves to another network, can leave the WebSocket
// open on a socket whose peer is gone; mqtt.js only notices after 1.5 x the
// keepalive. Three moments are worth a ping with a short deadline instead:
// - a resume gap: a timer that should tick every `tickMs` fired much later,
//   so the machine (and its timers) was suspended;
// - the tab comes back after a long hidden spell;
// - the browser says `online` (handled by Connection.setOnline).

/**
 * @typedef {{set: (fn: () => void, ms: number) => unknown, clear: (handle: unknown) => void}} Timers
 */

export class ResumeWatch {
  /**
   * @param {{
   *   onResume: (reason: string) => void,
   *   now?: () => number,
   *   timers?: Timers,
   *   tickMs?: number,
   *   gapMs?: number,
   *   hiddenGapMs?: number,
   *   longHiddenMs?: number,
   * }} options
   *   `gapMs`: lateness of a tick that means a resume (visible tab);
   *   `hiddenGapMs`: the same for a hidden tab, whose timers Chrome may run
   *   only once a minute ("intensive throttling"), so only longer gaps count;
   *   `longHiddenMs`: a hidden spell after which becoming visible checks.
   */
  constructor({ onResume, now = Date.now, timers, tickMs = 5000, gapMs = 20_000, hiddenGapMs = 120_000, longHiddenMs = 30_000 }) {
    this.onResume = onResume;
    this.now = now;
    this.timers = timers ?? { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(/** @type {any} */ (h)) };
    this.tickMs = tickMs;
    this.gapMs = gapMs;
    this.hiddenGapMs = hiddenGapMs;
    this.longHiddenMs = longHiddenMs;
    this.hidden = false;
    /** @type {number | null} */
    this.hiddenSince = null;
    this.last = 0;
    /** @type {unknown} */
    this.timer = null;
  }

  start() {
    this.stop();
    this.last = this.now();
    this.#schedule();
  }

  stop() {
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
  }

  /** @param {boolean} hidden  document.visibilityState === "hidden" */
  setHidden(hidden) {
    if (hidden === this.hidden) return;
    this.hidden = hidden;
    const now = this.now();
    if (hidden) {
      this.hiddenSince = now;
      return;
    }
    const since = this.hiddenSince;
    this.hiddenSince = null;
    if (since !== null && now - since >= this.longHiddenMs) {
      this.onResume(`the tab was hidden for ${Math.round((now - since) / 1000)} s`);
    }
  }

  #schedule() {
    this.timer = this.timers.set(() => this.#tick(), this.tickMs);
  }

  #tick() {
    const now = this.now();
    const late = now - this.last - this.tickMs;
    this.last = now;
    this.#schedule();
    if (late > (this.hidden ? this.hiddenGapMs : this.gapMs)) {
      this.onResume(`timers resumed ${Math.round((late + this.tickMs) / 1000)} s apart (the computer slept?)`);
    }
  }
}
