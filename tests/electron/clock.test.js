'use strict';
/**
 * A desktop clock that is wrong (hours fast, days slow): records are still accepted and
 * filed at the right time, on the server's clock. With a right clock, times are sent as
 * tracked (the other tests compare them exactly).
 */

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');

const { startServer } = require('./live-server');
const { makeTracker, uniqueModel, waitStored } = require('./tracking');

const HOUR = 60 * 60 * 1000;
// Date headers have whole seconds; the round trip on loopback adds a few milliseconds.
const SLACK_MS = 2500;

let server;

before(async () => {
  server = await startServer();
});

after(() => server?.close());

async function trackWithClockOff(t, offsetMs, strategies) {
  const model = uniqueModel(`clock ${offsetMs / HOUR}h`);
  const { tracker, events } = makeTracker(t, {
    baseUrl: server.baseUrl,
    token: server.token,
    strategies,
    clock: () => Date.now() + offsetMs,
  });
  const trueTimes = [];
  const tracked = [];
  for (const imageCount of [1, 2, 3]) {
    trueTimes.push(Date.now());
    tracked.push(await tracker.track({ model, imageCount }));
  }
  return { model, tracker, events, tracked, trueTimes };
}

function assertStoredAtTrueTimes(stored, tracked, trueTimes) {
  const byId = new Map(stored.map((record) => [record.eventId, record]));
  assert.equal(stored.length, tracked.length);
  tracked.forEach((record, index) => {
    const row = byId.get(record.id);
    assert.ok(row, `record ${record.id} was not stored`);
    const error = Date.parse(row.timestamp) - trueTimes[index];
    assert.ok(Math.abs(error) <= SLACK_MS, `stored ${row.timestamp}, ${error} ms off the true time`);
  });
}

test('a clock hours fast: records are accepted at the true time, not refused as future', async (t) => {
  const { model, events, tracked, trueTimes } = await trackWithClockOff(t, 3 * HOUR, ['realtime']);
  // What the app saw is its own (wrong) clock; what the server stores is corrected.
  assert.ok(Date.parse(tracked[0].timestamp) - trueTimes[0] > 2 * HOUR);
  const stored = await waitStored(server, model, 3);
  assertStoredAtTrueTimes(stored, tracked, trueTimes);
  assert.deepEqual(events.rejected, []);
});

test('a clock two days slow: records land on the true day, not two days back', async (t) => {
  const { model, tracker, events, tracked, trueTimes } = await trackWithClockOff(
    t,
    -48 * HOUR,
    ['batched']
  );
  const result = await tracker.flush();
  assert.equal(result.accepted, 3);
  assertStoredAtTrueTimes(await server.recordsOf(model), tracked, trueTimes);
  assert.deepEqual(events.rejected, []);
});
