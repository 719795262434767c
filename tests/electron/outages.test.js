'use strict';
/**
 * The tracker when things go wrong for real: the server down and back on the same port,
 * a throttled server answering 429 with Retry-After, and the app killed while the server's
 * answer to a batch is on its way.
 */

const assert = require('node:assert/strict');
const path = require('node:path');
const { after, before, test } = require('node:test');

const { forkChild, tempDir } = require('./fake-app');
const { startServer, waitFor } = require('./live-server');
const { startProxy } = require('./proxy');
const { assertStoredOnce, makeTracker, uniqueModel, waitStored } = require('./tracking');

const CHILD = path.join(__dirname, 'tracker-child.js');

let server;
let throttled; // one POST a second per user, so that a second one at once gets a real 429

before(async () => {
  [server, throttled] = await Promise.all([
    startServer(),
    startServer({ env: { THROTTLE_INGEST_RATE: '1/s' } }),
  ]);
});

after(() => Promise.all([server?.close(), throttled?.close()]));

function trackAll(tracker, model, counts) {
  return Promise.all(counts.map((imageCount) => tracker.track({ model, imageCount })));
}

test('records tracked while the server is down arrive exactly once when it is back', async (t) => {
  const model = uniqueModel('outage');
  const { tracker, events } = makeTracker(t, {
    baseUrl: server.baseUrl,
    token: server.token,
    strategies: ['realtime'],
    retryInitialMs: 50,
    retryMaxMs: 400,
  });
  const tracked = await trackAll(tracker, model, [1, 2]);
  await waitStored(server, model, 2);

  await server.kill();
  tracked.push(...(await trackAll(tracker, model, [3, 4, 5])));
  await waitFor(() => events.errors.length >= 5, { what: 'five failed attempts while down' });
  tracked.push(await tracker.track({ model, imageCount: 6 }));
  await server.start();

  await waitFor(() => tracker.pending === 0, { what: 'the tracker to resume by itself' });
  await assertStoredOnce(server, model, tracked);
  const delays = events.errors.map((error) => error.retryInMs);
  assert.ok(delays.every((delay) => delay >= 25 && delay <= 400), `delays ${delays}`);
  assert.ok(Math.max(...delays) >= 200, `the backoff grows: ${delays}`);
});

test('a 429 with Retry-After is waited out before the next attempt', async (t) => {
  const model = uniqueModel('throttled');
  const proxy = await startProxy({ targetPort: throttled.port });
  t.after(() => proxy.close());
  const { tracker, events } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: throttled.token,
    strategies: ['realtime'],
    retryInitialMs: 20, // so that a tracker ignoring Retry-After would retry at once
    retryMaxMs: 50,
  });
  // The first record goes out at once; the second, tracked while it is out, follows it
  // within milliseconds. The server counts per clock second, so start early in one: both
  // then fall in the same window.
  const intoSecond = Date.now() % 1000;
  if (intoSecond > 100) await new Promise((resolve) => setTimeout(resolve, 1010 - intoSecond));
  const tracked = [await tracker.track({ model, imageCount: 1 })];
  tracked.push(await tracker.track({ model, imageCount: 2 }));
  await waitFor(() => tracker.pending === 0, { what: 'both records, the second after the wait' });

  const posts = proxy.posts();
  const answers = posts.map((post) => [post.status, post.records]);
  assert.deepEqual(answers, [[201, 1], [429, 1], [201, 1]]);
  const retryAfterMs = Number(posts[1].answer.headers['retry-after']) * 1000;
  assert.ok(retryAfterMs >= 1000, `Retry-After: ${posts[1].answer.headers['retry-after']}`);
  const waited = posts[2].receivedAt - posts[1].answeredAt;
  assert.ok(waited >= retryAfterMs - 5, `retried after ${waited} ms, asked ${retryAfterMs} ms`);
  assert.deepEqual(
    events.errors.map((error) => [error.status, error.retryInMs]),
    [[429, retryAfterMs]]
  );
  await assertStoredOnce(throttled, model, tracked);
});

test("an app killed before reading its batch's answer loses and doubles nothing", async (t) => {
  const model = uniqueModel('killed');
  const userData = tempDir(t);
  let victim = null;
  // Lets the batch reach the server, waits for the server's answer, and kills the app
  // before relaying it: the records are stored, but the app never learns it.
  const proxy = await startProxy({
    targetPort: server.port,
    beforeRelay: async () => {
      if (!victim) return 'relay';
      const child = victim;
      victim = null;
      child.kill('SIGKILL');
      await child.exited;
      return 'drop';
    },
  });
  t.after(() => proxy.close());
  const app = (mode) => {
    const child = forkChild(t, CHILD, [mode, userData, proxy.baseUrl, server.token, model, '10']);
    child.messages = [];
    child.on('message', (message) => child.messages.push(message));
    return child;
  };
  const said = (child, key) =>
    waitFor(() => child.messages.find((message) => key in message || 'error' in message), {
      what: `the app to report ${key}`,
    }).then((message) => {
      assert.equal(message.error, undefined);
      return message[key];
    });

  const first = app('send');
  victim = first;
  const tracked = await said(first, 'tracked');
  const death = await first.exited;

  assert.equal(death.signal, 'SIGKILL');
  assert.deepEqual(proxy.posts().map((post) => post.status), [201]);
  await waitStored(server, model, 10); // stored, though the app never saw the answer

  const second = app('resume');
  assert.equal(await said(second, 'pendingAtStart'), 10, 'the batch was still queued');
  const flushed = await said(second, 'flushed');
  assert.deepEqual((await second.exited).code, 0);

  assert.equal(flushed.accepted, 0);
  assert.equal(flushed.duplicates, 10, 'the resend was absorbed by the event ids');
  assert.equal(flushed.pending, 0);
  await assertStoredOnce(server, model, tracked);
});
