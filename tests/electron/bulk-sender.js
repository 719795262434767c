'use strict';
/**
 * A desktop app that generates images fast, for the fault runs (tests/test_faults.py): the
 * real UsageTracker (queue file on disk, batched sending, retries, Retry-After) tracks
 * `count` records at `perSecond` while the test stops the database or kills the server.
 *
 * Usage: node bulk-sender.js baseUrl token userData count perSecond sentFile
 *
 * Every line on standard output is one JSON event, so that the test can time its faults
 * while a batch is in flight and print what the client saw:
 * - {event: 'post', n, records}: batch n is being sent;
 * - {event: 'answer', n, status, accepted, duplicates} or {event: 'answer', n, status: null,
 *   error}: how it ended (no status: the connection failed);
 * - {event: 'retry', status, kind, retryInMs}: the tracker will try again later;
 * - {event: 'tracked', count, seconds}: every record is queued;
 * - {event: 'drained', seconds, pending}: the queue is empty (the process then exits).
 * The tracked records, as the tracker queued them, are written to `sentFile` (JSON lines)
 * before 'drained'.
 */

const fs = require('fs');
const { performance } = require('perf_hooks');
const { UsageTracker } = require('../../examples/usage-tracker');
const { FakeApp } = require('./fake-app');

const MODELS = ['Stable Diffusion', 'DALL-E', 'Flux', 'Midjourney', 'Imagen'];
const SPREAD_MINUTES = 2 * 24 * 60; // times over the last two days, so several rollup days
const POLL_MS = 20;

const [baseUrl, token, userData, count, perSecond, sentFile] = process.argv.slice(2);

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** fetch, reporting each POST (a batch) as it starts and as it ends. */
function reportingFetch() {
  let posts = 0;
  return async (url, options = {}) => {
    if (options.method !== 'POST') return fetch(url, options);
    posts += 1;
    const n = posts;
    say({ event: 'post', n, records: JSON.parse(options.body).length });
    let response;
    try {
      response = await fetch(url, options);
    } catch (error) {
      say({ event: 'answer', n, status: null, error: String(error.cause?.code || error) });
      throw error;
    }
    const body = await response
      .clone()
      .json()
      .catch(() => ({}));
    say({ event: 'answer', n, status: response.status, ...counts(body) });
    return response;
  };
}

function counts(body) {
  return { accepted: body.accepted ?? null, duplicates: body.duplicates ?? null };
}

function retryOf(error) {
  const { status = null, kind = null, retryInMs = null, message } = error;
  return { status, kind, retryInMs, message };
}

function recordFor(n, now) {
  return {
    model: MODELS[n % MODELS.length],
    imageCount: 1 + ((n * 7) % 10),
    timestamp: new Date(now - (n % SPREAD_MINUTES) * 60 * 1000 - (n % 1000)),
  };
}

/** Tracks `total` records at `rate` a second, as an app generating images would. */
async function trackAll(tracker, total, rate) {
  const started = performance.now();
  const now = Date.now();
  const tracked = [];
  while (tracked.length < total) {
    const due = Math.min(total, Math.ceil(((performance.now() - started) / 1000) * rate));
    const saving = [];
    for (let n = tracked.length; n < due; n += 1) {
      saving.push(tracker.track(recordFor(n, now)));
    }
    tracked.push(...(await Promise.all(saving)));
    await sleep(5);
  }
  return tracked;
}

async function main() {
  const tracker = new UsageTracker({
    app: new FakeApp(userData),
    baseUrl,
    token,
    strategies: ['batched'],
    batchSize: 100,
    batchMaxWaitMs: 200,
    retryInitialMs: 200,
    retryMaxMs: 2000,
    requestTimeoutMs: 20000,
    fetch: reportingFetch(),
    onError: (error) => say({ event: 'retry', ...retryOf(error) }),
    onRejected: (records, errors) => say({ event: 'rejected', records: records.length, errors }),
    onAuthError: (error) => say({ event: 'auth-error', ...error }),
  });
  const started = performance.now();
  const tracked = await trackAll(tracker, Number(count), Number(perSecond));
  const trackedAt = performance.now();
  say({ event: 'tracked', count: tracked.length, seconds: (trackedAt - started) / 1000 });
  while (tracker.pending > 0) await sleep(POLL_MS);
  const drainedAt = performance.now();
  await tracker.close();
  fs.writeFileSync(sentFile, tracked.map((record) => `${JSON.stringify(record)}\n`).join(''));
  say({
    event: 'drained',
    seconds: (drainedAt - started) / 1000,
    drainSeconds: (drainedAt - trackedAt) / 1000,
    pending: tracker.pending,
  });
}

main().catch((error) => {
  say({ event: 'error', message: String(error.stack || error) });
  process.exitCode = 1;
});
