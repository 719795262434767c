'use strict';
/**
 * UsageTracker: records image generations in a durable queue and delivers them to the
 * usage site exactly once, through restarts, crashes, outages and quits.
 *
 * Exactly once rests on two things: every record gets an event id when it is tracked, and
 * a record leaves the queue only after the server has answered for it. A resend after a
 * lost answer comes back from the server as a duplicate, so nothing is counted twice.
 *
 * Runs in Electron's main process; the `app` it needs is passed in, so the same code runs
 * under plain Node in tests (any object with `getPath`, `on`, `removeListener`, `quit`).
 */

const path = require('path');
const { randomUUID } = require('crypto');
const { performance } = require('perf_hooks');
const { DurableQueue } = require('./durable-queue');
const { postRecords, readServerClock, MAX_BATCH, MAX_BODY_BYTES } = require('./usage-api');

const STRATEGIES = ['realtime', 'batched', 'periodic', 'onClose'];
// A machine clock off by more than this (a dual-boot PC keeping local time in its hardware
// clock is off by hours) would make the server refuse records as "in the future", or file
// them on the wrong day; their times are corrected by the server's clock when sent.
const CLOCK_TOLERANCE_MS = 30 * 1000;

const DEFAULTS = {
  strategies: ['batched'],
  batchSize: 50,
  batchMaxWaitMs: 60 * 1000,
  periodicMs: 60 * 60 * 1000,
  quitTimeoutMs: 5 * 1000,
  retryInitialMs: 1000,
  retryMaxMs: 5 * 60 * 1000,
  requestTimeoutMs: 30 * 1000,
  queueFileName: 'usage-queue.jsonl',
};

class UsageTracker {
  /**
   * @param {object} options
   * @param {object} options.app Electron's `app` (or anything with getPath/on/quit).
   * @param {string} options.baseUrl e.g. 'https://usage.example.com'.
   * @param {string} [options.token] an API token (usg_...); without one, records queue up
   *   until `setToken` is called.
   * @param {string[]} [options.strategies] any of 'realtime', 'batched', 'periodic',
   *   'onClose'. Every strategy also sends on quit.
   */
  constructor(options) {
    const settings = { ...DEFAULTS, ...options };
    checkOptions(settings);
    this._app = settings.app;
    this._baseUrl = settings.baseUrl;
    this._token = settings.token || null;
    this._settings = settings;
    this._strategies = new Set(settings.strategies);
    this._fetch = settings.fetch || globalThis.fetch;
    this._clock = settings.clock || Date.now; // this machine's clock; tests skew it
    this._clockOffsetMs = null; // the server's clock minus ours, once an answer says
    this._callbacks = {
      onRejected: settings.onRejected,
      onAuthError: settings.onAuthError,
      onError: settings.onError,
    };
    const queueFile =
      settings.queueFile || path.join(this._app.getPath('userData'), settings.queueFileName);
    this._queue = DurableQueue.open(queueFile, {
      onRecovered: (report) => this._reportError(queueRecoveredError(report)),
    });

    this._flushing = null;
    this._authError = null;
    this._retryAt = 0; // performance.now() time before which nothing is sent on our own
    this._retryBecauseServerAsked = false;
    this._failures = 0;
    this._maxBatch = MAX_BATCH;
    this._timers = { retry: null, batch: null, periodic: null };
    this._inFlight = null;
    this._closed = false;
    this._quitState = 'idle';

    this._onBeforeQuit = this._onBeforeQuit.bind(this);
    if (typeof this._app.on === 'function') this._app.on('before-quit', this._onBeforeQuit);
    if (this._strategies.has('periodic')) {
      this._timers.periodic = setInterval(() => this._kick(), settings.periodicMs);
      this._timers.periodic.unref?.();
    }
    // Records left by the previous run go out now, unless the app only sends at quit.
    if (this._queue.size && this._sendsBeforeQuit()) setImmediate(() => this._kick());
  }

  /** How many records are waiting to be sent. */
  get pending() {
    return this._queue.size;
  }

  /** Copies of the waiting records, oldest first. */
  queuedRecords() {
    return this._queue.records();
  }

  /**
   * Queue one generation. Resolves with the stored record (`id`, `model`, `imageCount`,
   * `timestamp`) once it is on disk; from then on it survives a crash.
   */
  track({ model, imageCount, timestamp } = {}) {
    const record = {
      id: randomUUID(),
      model,
      imageCount,
      timestamp: isoTime(timestamp, this._clock),
    };
    const saved = this._queue.append(record);
    this._afterTrack();
    return saved.then(() => ({ ...record }));
  }

  /**
   * Send everything queued now, in batches; resolves with what happened. A call while a
   * flush runs joins it. Backoff after a network error is skipped (you asked), but a
   * server's Retry-After and an auth error are respected: nothing is sent then.
   *
   * Resolves with `{sent, accepted, duplicates, rejected, errors, pending, blocked, error}`:
   * `blocked` is 'auth' or 'retry-after' when sending was held back, `error` the last
   * failure (records stay queued and a retry is scheduled).
   */
  flush() {
    // Started on the next microtask, so that a drain with nothing to do cannot clear
    // `_flushing` before it is even set.
    if (!this._flushing) this._flushing = Promise.resolve().then(() => this._drain());
    return this._flushing;
  }

  /** Use a new token, e.g. after an auth error; queued records go out with it. */
  setToken(token) {
    this._token = token || null;
    this._authError = null;
    if (this._token && this._queue.size) this._kick();
  }

  /**
   * Stop sending: timers, the quit hook and any request in flight (its records stay
   * queued). Resolves when the queue file is up to date. Tracking still writes to disk.
   */
  async close() {
    this._closed = true;
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    if (typeof this._app.removeListener === 'function') {
      this._app.removeListener('before-quit', this._onBeforeQuit);
    }
    this._inFlight?.abort();
    await this._flushing?.catch(() => {});
    await this._queue.idle();
  }

  _sendsBeforeQuit() {
    return ['realtime', 'batched', 'periodic'].some((name) => this._strategies.has(name));
  }

  _afterTrack() {
    if (this._closed) return;
    if (this._strategies.has('realtime')) return this._kick();
    if (!this._strategies.has('batched')) return;
    if (this._queue.size >= this._settings.batchSize) return this._kick();
    if (!this._timers.batch) {
      this._timers.batch = setTimeout(() => {
        this._timers.batch = null;
        this._kick();
      }, this._settings.batchMaxWaitMs);
      this._timers.batch.unref?.();
    }
  }

  /** Our own reasons to send (strategies, retry timer) wait out any backoff. */
  _kick() {
    if (this._closed || !this._token || this._authError) return;
    if (performance.now() < this._retryAt) return;
    this.flush().catch((error) => this._reportError(error));
  }

  _blockedReason() {
    if (!this._token || this._authError) return 'auth';
    if (this._retryBecauseServerAsked && performance.now() < this._retryAt) {
      return 'retry-after';
    }
    return null;
  }

  async _drain() {
    const result = { sent: 0, accepted: 0, duplicates: 0, rejected: 0, errors: [] };
    try {
      for (;;) {
        if (this._closed) break;
        const blocked = this._blockedReason();
        if (blocked) {
          result.blocked = blocked;
          break;
        }
        const batch = this._queue.peek(this._maxBatch, MAX_BODY_BYTES);
        if (!batch.length) break;
        // Learn the server's clock before the first batch, so that even that one has its
        // times right (a slow clock is never refused, only misfiled).
        if (this._clockOffsetMs === null) await this._readServerClock();
        const keepGoing = await this._sendBatch(batch, result);
        if (!keepGoing) break;
      }
    } finally {
      // Cleared in the same turn as the last look at the queue, so a record tracked
      // after that look always starts a new flush instead of joining a finished one.
      this._flushing = null;
    }
    if (!this._queue.size) this._clearTimer('batch');
    result.pending = this._queue.size;
    return result;
  }

  async _readServerClock() {
    this._inFlight = new AbortController();
    const offset = await readServerClock({
      fetch: this._fetch,
      baseUrl: this._baseUrl,
      timeoutMs: this._settings.requestTimeoutMs,
      signal: this._inFlight.signal,
      clock: this._clock,
    });
    this._inFlight = null;
    if (offset !== null) this._clockOffsetMs = offset;
  }

  /** The record as sent: its time moved onto the server's clock when ours is off. */
  _onServerClock(record) {
    const offset = this._clockOffsetMs ?? 0;
    const time = Date.parse(record.timestamp);
    if (Math.abs(offset) < CLOCK_TOLERANCE_MS || Number.isNaN(time)) return record;
    return { ...record, timestamp: new Date(time + offset).toISOString() };
  }

  /** Sends one batch and applies the answer; false when sending must stop for now. */
  async _sendBatch(batch, result) {
    this._inFlight = new AbortController();
    const outcome = await postRecords({
      fetch: this._fetch,
      baseUrl: this._baseUrl,
      token: this._token,
      records: batch.map((record) => this._onServerClock(record)),
      timeoutMs: this._settings.requestTimeoutMs,
      signal: this._inFlight.signal,
      clock: this._clock,
    });
    this._inFlight = null;
    if (outcome.clockOffsetMs !== null) this._clockOffsetMs = outcome.clockOffsetMs;
    if (outcome.kind === 'answered') {
      await this._applyAnswer(batch, outcome, result);
      return true;
    }
    if (outcome.kind === 'too-large') return this._tooLarge(batch, outcome, result);
    if (outcome.kind === 'auth') {
      this._authError = { status: outcome.status, message: outcome.message };
      result.blocked = 'auth';
      this._call('onAuthError', { ...this._authError });
      return false;
    }
    result.error = this._scheduleRetry(outcome);
    return false;
  }

  async _applyAnswer(batch, outcome, result) {
    this._failures = 0;
    this._retryAt = 0;
    this._clearTimer('retry');
    result.sent += batch.length;
    result.accepted += outcome.accepted;
    result.duplicates += outcome.duplicates;
    result.rejected += outcome.rejected.length;
    // Rejected records can never be accepted as they are: drop them with the rest.
    await this._queue.remove(batch.map((record) => record.id));
    if (outcome.rejected.length) this._reject(outcome.rejected, result);
  }

  async _tooLarge(batch, outcome, result) {
    if (batch.length > 1) {
      this._maxBatch = Math.max(1, Math.floor(batch.length / 2));
      return true;
    }
    const error = { id: batch[0].id, index: 0, field: null, message: outcome.message };
    await this._queue.remove([batch[0].id]);
    result.rejected += 1;
    this._reject([{ record: batch[0], errors: [error] }], result);
    return true;
  }

  _reject(rejected, result) {
    const errors = rejected.flatMap((item) => item.errors);
    result.errors.push(...errors);
    this._call('onRejected', rejected.map((item) => ({ ...item.record })), errors);
  }

  _scheduleRetry(outcome) {
    const serverAsked = outcome.kind === 'wait';
    if (!serverAsked) this._failures += 1;
    const delay = serverAsked ? outcome.retryAfterMs : this._backoff();
    this._retryAt = performance.now() + delay;
    this._retryBecauseServerAsked = serverAsked;
    this._clearTimer('retry');
    if (!this._closed) {
      this._timers.retry = setTimeout(() => {
        this._timers.retry = null;
        this._retryAt = 0;
        this._kick();
      }, delay);
      this._timers.retry.unref?.();
    }
    const error = new Error(`Sending usage failed: ${outcome.message}; retrying in ${delay} ms.`);
    Object.assign(error, { status: outcome.status, retryInMs: delay, kind: outcome.kind });
    this._reportError(error);
    return error;
  }

  /** Exponential, capped, with jitter so that many apps do not retry in step. */
  _backoff() {
    const { retryInitialMs, retryMaxMs } = this._settings;
    const ceiling = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(this._failures - 1, 30));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  _onBeforeQuit(event) {
    if (this._quitState === 'done') return;
    event.preventDefault();
    if (this._quitState === 'flushing') return;
    this._quitState = 'flushing';
    let timer;
    const limit = new Promise((resolve) => {
      timer = setTimeout(resolve, this._settings.quitTimeoutMs);
    });
    const flushed = this.flush().catch((error) => this._reportError(error));
    Promise.race([flushed, limit]).then(async () => {
      clearTimeout(timer);
      // Whatever is unsent (or in flight, its answer lost) stays in the file for next start.
      await this.close().catch((error) => this._reportError(error));
      this._quitState = 'done';
      this._app.quit();
    });
  }

  _clearTimer(name) {
    if (!this._timers[name]) return;
    clearTimeout(this._timers[name]);
    clearInterval(this._timers[name]);
    this._timers[name] = null;
  }

  _reportError(error) {
    this._call('onError', error);
  }

  _call(name, ...args) {
    const callback = this._callbacks[name];
    if (typeof callback !== 'function') return;
    try {
      callback(...args);
    } catch (error) {
      // A broken callback must not stop delivery; say so once where someone may look.
      console.error(`UsageTracker ${name} callback threw:`, error);
    }
  }
}

function checkOptions(settings) {
  if (!settings.app || typeof settings.app.getPath !== 'function') {
    if (!settings.queueFile) throw new TypeError('UsageTracker needs `app` (or `queueFile`).');
    settings.app = settings.app || {};
  }
  if (typeof settings.baseUrl !== 'string' || !/^https?:\/\//.test(settings.baseUrl)) {
    throw new TypeError('UsageTracker needs `baseUrl`, e.g. "https://usage.example.com".');
  }
  const unknown = settings.strategies.filter((name) => !STRATEGIES.includes(name));
  if (!settings.strategies.length || unknown.length) {
    throw new TypeError(`strategies must be some of ${STRATEGIES.join(', ')}.`);
  }
  if (!(settings.fetch || globalThis.fetch)) {
    throw new TypeError('UsageTracker needs Node 18+ (global fetch) or a `fetch` option.');
  }
}

function isoTime(timestamp, clock) {
  if (timestamp === undefined || timestamp === null) return new Date(clock()).toISOString();
  if (timestamp instanceof Date || typeof timestamp === 'number') {
    return new Date(timestamp).toISOString();
  }
  return timestamp; // a string: the server checks it, and reports it if it is wrong
}

function queueRecoveredError(report) {
  const parts = [];
  if (report.badLines) {
    parts.push(`${report.badLines} unreadable line(s); original kept as ${report.keptAside}`);
  }
  if (report.mergedFromTemp) {
    parts.push(`${report.mergedFromTemp} record(s) recovered from an unfinished write`);
  }
  const error = new Error(`Usage queue ${report.file} was repaired: ${parts.join('; ')}.`);
  return Object.assign(error, { kind: 'queue', ...report });
}

module.exports = { UsageTracker, STRATEGIES };
