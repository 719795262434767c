'use strict';
/**
 * Model usage tracking for an Electron app: the main-process side.
 *
 * In main.js:
 *
 *   const electron = require('electron');
 *   const { setupUsageTracking } = require('./electron-app-example');
 *
 *   electron.app.whenReady().then(() => {
 *     setupUsageTracking(electron, {
 *       baseUrl: 'https://usage.example.com',
 *       token: savedToken,                    // usg_..., from the site's tokens page
 *       strategies: ['batched', 'periodic'],
 *       onAuthError: () => askTheUserForANewToken(),
 *     });
 *     createWindow();                         // with preload.js beside this file
 *   });
 *
 * The renderer then calls `window.usage.track({model, imageCount})` (see preload.js), or
 * the main process calls `getUsageTracker().track(...)` directly. docs/electron.md has the
 * whole story: tokens, strategies, and what happens offline and at quit.
 */

const { UsageTracker } = require('./usage-tracker');

const TRACK_CHANNEL = 'usage:track';

let tracker = null;

/**
 * Create the app's tracker and answer the renderer's `usage:track` calls.
 * `electron` is the electron module (only `app` and, optionally, `ipcMain` are used).
 * Options are UsageTracker's; `app` is filled in.
 */
function setupUsageTracking(electron, options) {
  if (tracker) throw new Error('setupUsageTracking was already called.');
  tracker = new UsageTracker({ ...options, app: electron.app });
  if (electron.ipcMain) {
    electron.ipcMain.handle(TRACK_CHANNEL, async (_event, usage) => {
      // The renderer is less trusted than main: take only the fields we know.
      const { id, timestamp } = await tracker.track({
        model: usage?.model,
        imageCount: usage?.imageCount,
        timestamp: usage?.timestamp,
      });
      return { id, timestamp };
    });
  }
  return tracker;
}

function getUsageTracker() {
  if (!tracker) throw new Error('Call setupUsageTracking(electron, options) first.');
  return tracker;
}

/**
 * The integration notes' function, kept for code written against them: one record or an
 * array, with `modelName`/`model` and `imageCount`/`count`. The records are queued (so
 * never lost) and sent at once. User fields (`userId`, `email`) are ignored: the token
 * already says whose records these are.
 *
 * Resolves with the flush's result (`accepted`, `duplicates`, `rejected`, `errors`...)
 * plus `queued`: how many of these records are still waiting (offline, say) and will be
 * sent later by themselves. It does not reject when offline, so do not send again.
 */
async function sendModelUsageData(data) {
  const items = Array.isArray(data) ? data : [data];
  const current = getUsageTracker();
  const tracked = await Promise.all(
    items.map((item) =>
      current.track({
        model: item?.modelName ?? item?.model,
        imageCount: item?.imageCount ?? item?.count,
        timestamp: item?.timestamp,
      })
    )
  );
  const result = await current.flush();
  const waiting = new Set(current.queuedRecords().map((record) => record.id));
  return { ...result, queued: tracked.filter((record) => waiting.has(record.id)).length };
}

/** Stop and forget the tracker (for tests, or an app that signs the user out). */
async function stopUsageTracking() {
  const current = tracker;
  tracker = null;
  await current?.close();
}

module.exports = {
  setupUsageTracking,
  getUsageTracker,
  sendModelUsageData,
  stopUsageTracking,
  UsageTracker,
  TRACK_CHANNEL,
};
