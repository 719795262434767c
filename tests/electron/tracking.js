'use strict';
/** Trackers for the integration tests, and checks of what the real server stored. */

const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { UsageTracker } = require('../../examples/usage-tracker');
const { FakeApp } = require('./fake-app');
const { waitFor } = require('./live-server');

/**
 * A tracker with a fake app on a fresh userData directory (or `userData`), small retry
 * delays, and every callback recorded in `events`. Closed, and its directory removed,
 * when the test ends.
 */
function makeTracker(t, options = {}) {
  const ownDir = !options.userData;
  const userData = options.userData || fs.mkdtempSync(path.join(os.tmpdir(), 'usage-tracker-'));
  const app = new FakeApp(userData);
  const events = { rejected: [], authErrors: [], errors: [] };
  const tracker = new UsageTracker({
    app,
    retryInitialMs: 20,
    retryMaxMs: 200,
    onRejected: (records, errors) => events.rejected.push({ records, errors }),
    onAuthError: (error) => events.authErrors.push(error),
    onError: (error) => events.errors.push(error),
    ...options,
  });
  t.after(async () => {
    await tracker.close(); // before the directory goes, so no write lands in a removed one
    if (ownDir) fs.rmSync(userData, { recursive: true, force: true });
  });
  return { tracker, app, events, userData };
}

/** A model name of its own, so that each test reads back only its own records. */
function uniqueModel(label) {
  return `${label} ${randomUUID().slice(0, 8)}`;
}

/** Waits until the server holds `count` records of `model`; resolves with them. */
function waitStored(server, model, count, { token, timeoutMs = 10000 } = {}) {
  return waitFor(
    async () => {
      const stored = await server.recordsOf(model, token);
      return stored.length >= count && stored;
    },
    { timeoutMs, what: `${count} stored records of ${model}`, intervalMs: 50 }
  );
}

/** Each tracked record is stored exactly once, as it was tracked, and nothing else. */
async function assertStoredOnce(server, model, tracked, { token } = {}) {
  const stored = await server.recordsOf(model, token);
  const byId = new Map(stored.map((record) => [record.eventId, record]));
  assert.equal(stored.length, tracked.length, `stored ${stored.length}, tracked ${tracked.length}`);
  assert.equal(byId.size, stored.length, 'an event id was stored twice');
  for (const record of tracked) {
    const row = byId.get(record.id);
    assert.ok(row, `record ${record.id} was not stored`);
    assert.equal(row.imageCount, record.imageCount);
    assert.equal(Date.parse(row.timestamp), Date.parse(record.timestamp));
  }
}

module.exports = { makeTracker, uniqueModel, waitStored, assertStoredOnce };
