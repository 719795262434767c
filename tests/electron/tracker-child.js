'use strict';
/**
 * A desktop app's main process, cut down to the tracker, for tests that kill it for real.
 * Talks to the test over IPC (child_process.fork).
 *
 * Usage: fork('tracker-child.js', [mode, userData, baseUrl, token, model, count])
 * - mode 'send': track `count` records, report them ({tracked}), then flush (a test kills
 *   the process while that flush waits for its answer);
 * - mode 'resume': report what the queue held at start ({pendingAtStart}), flush, report
 *   ({flushed, pending}) and exit.
 */

const { UsageTracker } = require('../../examples/usage-tracker');
const { FakeApp } = require('./fake-app');

const [mode, userData, baseUrl, token, model, count] = process.argv.slice(2);

async function main() {
  const app = new FakeApp(userData);
  const tracker = new UsageTracker({ app, baseUrl, token, strategies: ['onClose'] });
  if (mode === 'send') {
    const tracked = [];
    for (let n = 1; n <= Number(count); n += 1) {
      tracked.push(await tracker.track({ model, imageCount: n }));
    }
    process.send({ tracked });
    await tracker.flush();
    process.send({ error: 'the flush finished: the test should have killed this process' });
  } else {
    process.send({ pendingAtStart: tracker.pending });
    const flushed = await tracker.flush();
    process.send({ flushed, pending: tracker.pending });
    await tracker.close();
    process.disconnect();
  }
}

main().catch((error) => {
  process.send({ error: String(error.stack || error) });
  process.exitCode = 1;
});
