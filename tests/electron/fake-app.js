'use strict';
/**
 * Stand-ins for what Electron gives the main process, for running the tracker under Node:
 * an `app` whose quit() emits a cancellable 'before-quit' like Electron's, and a
 * throwaway userData directory.
 */

const { fork, spawn } = require('child_process');
const { EventEmitter } = require('events');
const fs = require('fs');
const os = require('os');
const path = require('path');

class FakeApp extends EventEmitter {
  constructor(userData) {
    super();
    this.userData = userData;
    this.quitCalls = 0;
    this.quitted = false;
    this.quittedAt = null;
  }

  getPath(name) {
    if (name !== 'userData') throw new Error(`FakeApp has no path ${name}`);
    return this.userData;
  }

  quit() {
    this.quitCalls += 1;
    let prevented = false;
    this.emit('before-quit', { preventDefault: () => (prevented = true) });
    if (!prevented) {
      this.quitted = true;
      this.quittedAt = Date.now();
    }
  }
}

// Child processes per test, so that cleanup kills them before removing their files.
const childrenOf = new WeakMap();

/** A fresh directory, removed (after the test's child processes are gone) when it ends. */
function tempDir(t, prefix = 'usage-tracker-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(async () => {
    await killChildren(t);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** `spawn`, with the child killed when the test ends; `child.exited` resolves on exit. */
function spawnChild(t, command, args, options) {
  return watchChild(t, spawn(command, args, options));
}

/** `fork` (a Node script with an IPC channel), killed when the test ends. */
function forkChild(t, script, args, options) {
  return watchChild(t, fork(script, args, options));
}

function watchChild(t, child) {
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  if (!childrenOf.has(t)) childrenOf.set(t, new Set());
  childrenOf.get(t).add(child);
  t.after(() => killChildren(t));
  return child;
}

async function killChildren(t) {
  const children = [...(childrenOf.get(t) || [])];
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await Promise.all(children.map((child) => child.exited));
}

module.exports = { FakeApp, tempDir, spawnChild, forkChild };
