'use strict';
/**
 * The tracker against the real server: each sending strategy, quitting, rejected records,
 * a revoked token, and records tracked while a batch is out.
 */

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');

const example = require('../../examples/electron-app-example');
const { FakeApp } = require('./fake-app');
const { startServer, waitFor } = require('./live-server');
const { startProxy } = require('./proxy');
const { assertStoredOnce, makeTracker, uniqueModel, waitStored } = require('./tracking');

let server;

before(async () => {
  server = await startServer();
});

after(() => server?.close());

/** A tracker that talks to the server directly unless `baseUrl` says otherwise. */
function trackerFor(t, options) {
  return makeTracker(t, { baseUrl: server.baseUrl, token: server.token, ...options });
}

/** A counting proxy in front of the server, closed when the test ends. */
async function proxyFor(t, hooks = {}) {
  const proxy = await startProxy({ targetPort: server.port, ...hooks });
  t.after(() => proxy.close());
  return proxy;
}

function trackAll(tracker, model, counts) {
  return Promise.all(counts.map((imageCount) => tracker.track({ model, imageCount })));
}

test('realtime sends each record as soon as it is tracked', async (t) => {
  const model = uniqueModel('realtime');
  const { tracker } = trackerFor(t, { strategies: ['realtime'] });

  const tracked = [];
  for (const imageCount of [1, 2, 3]) tracked.push(await tracker.track({ model, imageCount }));

  await waitStored(server, model, 3);
  await assertStoredOnce(server, model, tracked);
  await waitFor(() => tracker.pending === 0, { what: 'an empty queue' });
});

test('batched sends nothing until the batch size is reached, then the whole batch', async (t) => {
  const model = uniqueModel('batched by count');
  const proxy = await proxyFor(t);
  const { tracker } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['batched'],
    batchSize: 5,
    batchMaxWaitMs: 60 * 60 * 1000,
  });

  const tracked = await trackAll(tracker, model, [1, 2, 3, 4]);
  assert.equal(proxy.posts().length, 0);
  tracked.push(await tracker.track({ model, imageCount: 5 }));

  await waitStored(server, model, 5);
  await assertStoredOnce(server, model, tracked);
  assert.deepEqual(proxy.posts().map((post) => post.records), [5]);
});

test('batched sends a smaller batch once the wait is over', async (t) => {
  const model = uniqueModel('batched by time');
  const proxy = await proxyFor(t);
  const { tracker } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['batched'],
    batchSize: 1000,
    batchMaxWaitMs: 300,
  });
  const started = Date.now();

  const tracked = await trackAll(tracker, model, [1, 2, 3]);

  await waitStored(server, model, 3);
  await assertStoredOnce(server, model, tracked);
  const posts = proxy.posts();
  assert.deepEqual(posts.map((post) => post.records), [3]);
  assert.ok(posts[0].receivedAt - started >= 295, `sent after ${posts[0].receivedAt - started} ms`);
});

test('periodic sends what accumulated at each interval', async (t) => {
  const model = uniqueModel('periodic');
  const proxy = await proxyFor(t);
  const started = Date.now();
  const { tracker } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['periodic'],
    periodicMs: 250,
  });

  const first = await trackAll(tracker, model, [1, 2, 3]);
  await waitStored(server, model, 3);
  // Join the tick's flush until it ends: a flush also takes what is tracked while it runs.
  await tracker.flush();
  const second = await trackAll(tracker, model, [4, 5]);
  await waitStored(server, model, 5);

  await assertStoredOnce(server, model, [...first, ...second]);
  const posts = proxy.posts();
  assert.deepEqual(posts.map((post) => post.records), [3, 2]);
  // Ticks come at 250 ms, 500 ms... after the start; the second batch, tracked after the
  // first tick, waits for one of the later ones (a request's own latency only adds).
  assert.ok(posts[0].receivedAt - started >= 250, 'nothing is sent before the first tick');
  assert.ok(posts[1].receivedAt - started >= 500, 'the second batch waits for a later tick');
});

test('onClose holds the quit, sends everything, then quits', async (t) => {
  const model = uniqueModel('on close');
  const proxy = await proxyFor(t);
  const { tracker, app } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['onClose'],
  });
  const tracked = await trackAll(tracker, model, [1, 2, 3]);
  assert.equal(proxy.posts().length, 0);

  app.quit();

  assert.equal(app.quitted, false, 'the first quit is held');
  await waitFor(() => app.quitted, { what: 'the app to quit' });
  assert.equal(app.quitCalls, 2, 'the tracker quits again after its flush');
  const posts = proxy.posts();
  assert.deepEqual(posts.map((post) => post.records), [3]);
  assert.ok(posts[0].answeredAt <= app.quittedAt, 'the answer came before the quit');
  await assertStoredOnce(server, model, tracked);
  assert.equal(tracker.pending, 0);
});

for (const strategy of ['batched', 'periodic']) {
  test(`${strategy} also sends everything at quit`, async (t) => {
    const model = uniqueModel(`${strategy} at quit`);
    const { tracker, app } = makeTracker(t, {
      baseUrl: server.baseUrl,
      token: server.token,
      strategies: [strategy],
      batchSize: 1000,
      batchMaxWaitMs: 60 * 60 * 1000,
      periodicMs: 60 * 60 * 1000,
    });
    const tracked = await trackAll(tracker, model, [1, 2]);

    app.quit();

    await waitFor(() => app.quitted, { what: 'the app to quit' });
    await assertStoredOnce(server, model, tracked);
  });
}

test('at quit, an unanswered batch stays queued and goes once at next start', async (t) => {
  const model = uniqueModel('quit time limit');
  // The server stores the batch, but its answer never reaches the app.
  const proxy = await proxyFor(t, { beforeRelay: () => new Promise(() => {}) });
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-tracker-'));
  const first = makeTracker(t, {
    userData,
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['onClose'],
    quitTimeoutMs: 300,
  });
  const tracked = await trackAll(first.tracker, model, [1, 2]);
  const quitAt = Date.now();

  first.app.quit();

  await waitFor(() => first.app.quitted, { what: 'the app to quit' });
  assert.ok(first.app.quittedAt - quitAt >= 295, 'the quit waited for the time limit');
  assert.equal(proxy.posts().length, 1);
  await waitStored(server, model, 2);

  const second = trackerFor(t, { userData, strategies: ['realtime'] });
  t.after(() => fs.rmSync(userData, { recursive: true, force: true }));
  assert.equal(second.tracker.pending, 2, 'the unanswered records were still queued');
  await waitFor(() => second.tracker.pending === 0, { what: 'the resend at start' });
  await assertStoredOnce(server, model, tracked);
});

test('rejected records are dropped and reported; good ones beside them are stored', async (t) => {
  const model = uniqueModel('rejected');
  const proxy = await proxyFor(t);
  const { tracker, events } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: server.token,
    strategies: ['onClose'],
  });
  const good = [await tracker.track({ model, imageCount: 1 })];
  const zero = await tracker.track({ model, imageCount: 0 });
  good.push(await tracker.track({ model, imageCount: 2 }));
  const noModel = await tracker.track({ model: '', imageCount: 1 });
  const huge = await tracker.track({ model, imageCount: 100000 });

  const result = await tracker.flush();

  assert.equal(result.accepted, 2);
  assert.equal(result.rejected, 3);
  assert.equal(events.rejected.length, 1);
  const [report] = events.rejected;
  assert.deepEqual(report.records.map((record) => record.id), [zero.id, noModel.id, huge.id]);
  assert.deepEqual(
    report.errors.map((error) => [error.id, error.field]),
    [[zero.id, 'imageCount'], [noModel.id, 'model'], [huge.id, 'imageCount']]
  );
  assert.equal(tracker.pending, 0);
  await assertStoredOnce(server, model, good);

  const again = await tracker.flush();
  assert.equal(again.sent, 0);
  assert.equal(proxy.posts().length, 1, 'rejected records are never sent again');
});

test('a batch with only rejected records (a 400) is dropped and reported too', async (t) => {
  const model = uniqueModel('all rejected');
  const { tracker, events } = trackerFor(t, { strategies: ['onClose'] });
  const bad = await trackAll(tracker, model, [0, -1]);

  const result = await tracker.flush();

  assert.equal(result.rejected, 2);
  const ids = (records) => records.map((record) => record.id);
  assert.deepEqual(ids(events.rejected[0].records), ids(bad));
  assert.equal(tracker.pending, 0);
  assert.deepEqual(await server.recordsOf(model), []);
});

test('a revoked token stops sending and is reported once; a new token resumes', async (t) => {
  const model = uniqueModel('revoked');
  const doomed = await server.createToken('Revoked during the test');
  const proxy = await proxyFor(t);
  const { tracker, events } = makeTracker(t, {
    baseUrl: proxy.baseUrl,
    token: doomed,
    strategies: ['realtime'],
  });
  const tracked = [await tracker.track({ model, imageCount: 1 })];
  await waitStored(server, model, 1);

  await server.revokeToken(doomed);
  // The server's processes each remember a checked token for up to a second
  // (usage/tokens.py, CHECKED_SECONDS): a revocation is in force everywhere after that.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  tracked.push(await tracker.track({ model, imageCount: 2 }));
  await waitFor(() => events.authErrors.length > 0, { what: 'onAuthError' });
  const postsAtAuthError = proxy.posts().length;
  tracked.push(await tracker.track({ model, imageCount: 3 }));
  const result = await tracker.flush();

  assert.deepEqual(events.authErrors.map((error) => error.status), [401]);
  assert.match(events.authErrors[0].message, /revoked/);
  assert.equal(result.blocked, 'auth');
  assert.equal(result.sent, 0);
  assert.equal(proxy.posts().length, postsAtAuthError, 'nothing is sent after the 401');
  assert.equal(tracker.pending, 2, 'the unsent records are kept');

  tracker.setToken(server.token);

  await waitFor(() => tracker.pending === 0, { what: 'the queue to drain with the new token' });
  await assertStoredOnce(server, model, tracked);
  assert.equal(events.authErrors.length, 1);
});

test('records tracked while a batch is out are all delivered', async (t) => {
  const model = uniqueModel('during flush');
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const proxy = await proxyFor(t, { beforeForward: () => held });
  const { tracker } = trackerFor(t, { baseUrl: proxy.baseUrl, strategies: ['onClose'] });
  const tracked = await trackAll(tracker, model, [1, 2, 3, 4, 5]);

  const flushed = tracker.flush();
  await waitFor(() => proxy.posts().length === 1, { what: 'the first batch to be out' });
  tracked.push(...(await trackAll(tracker, model, Array.from({ length: 20 }, (_, n) => n + 1))));
  const joined = tracker.flush();
  release();

  assert.equal(joined, flushed, 'a second flush joins the running one');
  const result = await flushed;
  assert.equal(result.accepted, 25);
  assert.equal(tracker.pending, 0);
  assert.deepEqual(proxy.posts().map((post) => post.records), [5, 20]);
  await assertStoredOnce(server, model, tracked);
});

test('a long queue goes in batches of at most 1000 records', async (t) => {
  const model = uniqueModel('bulk');
  const token = await server.createUser('bulk');
  const proxy = await proxyFor(t);
  const { tracker } = makeTracker(t, { baseUrl: proxy.baseUrl, token, strategies: ['onClose'] });
  const counts = Array.from({ length: 2345 }, (_, n) => (n % 9) + 1);
  const tracked = await trackAll(tracker, model, counts);

  const result = await tracker.flush();

  assert.equal(result.accepted, 2345);
  assert.deepEqual(proxy.posts().map((post) => post.records), [1000, 1000, 345]);
  await assertStoredOnce(server, model, tracked, { token });
});

test("the integration notes' sendModelUsageData still works, on top of the tracker", async (t) => {
  const model = uniqueModel('seed');
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-tracker-'));
  const handlers = new Map();
  const electron = {
    app: new FakeApp(userData),
    ipcMain: { handle: (channel, handler) => handlers.set(channel, handler) },
  };
  example.setupUsageTracking(electron, {
    baseUrl: server.baseUrl,
    token: server.token,
    strategies: ['onClose'],
  });
  t.after(async () => {
    await example.stopUsageTracking();
    fs.rmSync(userData, { recursive: true, force: true });
  });

  const one = await example.sendModelUsageData({
    modelName: model,
    imageCount: 5,
    userId: 'user_123',
  });
  const many = await example.sendModelUsageData([
    { model, count: 3, user_id: 'user_123' },
    { modelName: model, imageCount: 2, email: 'someone@example.com' },
  ]);
  const invoke = handlers.get(example.TRACK_CHANNEL);
  const fromRenderer = await invoke({}, { model, imageCount: 7, id: 'forged' });
  await example.getUsageTracker().flush();

  assert.equal(one.accepted, 1);
  assert.equal(one.queued, 0);
  assert.equal(many.accepted, 2);
  assert.match(fromRenderer.id, /^[0-9a-f-]{36}$/);
  const stored = await server.recordsOf(model);
  assert.deepEqual(stored.map((record) => record.imageCount).sort(), [2, 3, 5, 7]);
});
