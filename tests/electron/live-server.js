'use strict';
/**
 * The real usage site for the desktop-client tests: gunicorn on a free loopback port, a
 * fresh SQLite database, a real user and API token. No mocks; the tests read back what the
 * server stored through its own list API.
 */

const { spawn, execFile } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.USAGE_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');
const GUNICORN = path.join(path.dirname(PYTHON), 'gunicorn');
const HOST = '127.0.0.1';
const USERNAME = 'alice';

// Server process groups still running, killed even if a test run ends abruptly.
const liveGroups = new Set();
process.on('exit', () => {
  for (const pid of liveGroups) killGroup(pid);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const pid of liveGroups) killGroup(pid);
    process.kill(process.pid, signal); // the listener is gone: die as the signal intends
  });
}

function killGroup(pid) {
  liveGroups.delete(pid);
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Resolves once `check()` is truthy; fails with `what` after `timeoutMs`. */
async function waitFor(check, { timeoutMs = 10000, what = 'condition', intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, HOST, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Start the site. `env` adds server settings (e.g. THROTTLE_INGEST_RATE). Resolves with a
 * LiveServer whose `token` belongs to the user `alice`.
 */
async function startServer({ env = {} } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-electron-'));
  const server = new LiveServer(dir, await freePort(), env);
  try {
    await server.manage('migrate', '--no-input', '--verbosity', '0');
    server.token = await server.createUser(USERNAME);
    await server.start();
    return server;
  } catch (error) {
    await server.close();
    throw error;
  }
}

class LiveServer {
  constructor(dir, port, env) {
    this.dir = dir;
    this.port = port;
    this.baseUrl = `http://${HOST}:${port}`;
    this.logFile = path.join(dir, 'server.log');
    this.env = {
      ...process.env,
      SECRET_KEY: process.env.SECRET_KEY || 'desktop-client-tests',
      DEBUG: '0',
      HTTPS_ONLY: '0', // plain HTTP on loopback
      DATABASE_URL: `sqlite:///${path.join(dir, 'db.sqlite3')}`,
      ALLOWED_HOSTS: '127.0.0.1,localhost',
      THROTTLE_INGEST_RATE: '10000/min',
      BIND: `${HOST}:${port}`,
      WEB_CONCURRENCY: '1',
      ACCESS_LOG: '',
      ...env,
    };
    this.process = null;
  }

  /** `python manage.py ...args`; resolves with its standard output. */
  manage(...args) {
    return new Promise((resolve, reject) => {
      const options = { cwd: ROOT, env: this.env };
      execFile(PYTHON, ['manage.py', ...args], options, (error, stdout, stderr) => {
        if (error) reject(new Error(`manage.py ${args[0]} failed: ${stderr || error.message}`));
        else resolve(stdout);
      });
    });
  }

  /** Create a user; resolves with a new API token of theirs. */
  async createUser(username) {
    await this.manage(
      'shell',
      '-c',
      `from django.contrib.auth import get_user_model; ` +
        `get_user_model().objects.create_user(` +
        `'${username}', '${username}@example.com', 'unused-password-1')`
    );
    return this.createToken('Desktop app tests', username);
  }

  /** A new raw API token (the command prints it on its last line). */
  async createToken(name, username = USERNAME) {
    const output = await this.manage('create_api_token', username, '--name', name);
    return output.trim().split('\n').pop().trim();
  }

  async revokeToken(raw) {
    const prefix = raw.slice('usg_'.length, 'usg_'.length + 8);
    await this.manage(
      'shell',
      '-c',
      `from usage.tokens import revoke_token; from usage.models import ApiToken; ` +
        `revoke_token(ApiToken.objects.get(prefix='${prefix}'))`
    );
  }

  /** Start gunicorn (again, on the same port after `kill`) and wait until it answers. */
  async start() {
    const log = fs.openSync(this.logFile, 'a');
    this.process = spawn(GUNICORN, ['--config', 'gunicorn.conf.py', 'usage_site.wsgi'], {
      cwd: ROOT,
      env: this.env,
      stdio: ['ignore', log, log],
      // Its own process group, so that a kill takes the workers too, not just the master.
      detached: true,
    });
    fs.closeSync(log);
    const child = this.process;
    liveGroups.add(child.pid);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.exited = exited;
    let gone = false;
    exited.then(() => {
      gone = true;
    });
    await waitFor(
      async () => {
        if (gone) throw new Error(`gunicorn exited early:\n${this.logTail()}`);
        return this.answers();
      },
      { timeoutMs: 20000, what: `gunicorn on port ${this.port}`, intervalMs: 50 }
    );
  }

  async answers() {
    try {
      const response = await fetch(`${this.baseUrl}/api/health/simple`);
      return response.status === 200;
    } catch {
      return false;
    }
  }

  /** Stop gunicorn hard (the port closes at once) and wait for it to be gone. */
  async kill() {
    const child = this.process;
    if (!child) return;
    this.process = null;
    killGroup(child.pid);
    await child.exited;
    await waitFor(async () => !(await this.answers()), { what: 'the port to close' });
  }

  async close() {
    await this.kill().catch(() => {});
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  logTail() {
    try {
      return fs.readFileSync(this.logFile, 'utf8').slice(-3000);
    } catch {
      return '';
    }
  }

  /** Every record the token's owner has, read back through `GET /api/model-usage`. */
  async records(token = this.token) {
    const all = [];
    let url = `${this.baseUrl}/api/model-usage?limit=500`;
    while (url) {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
      if (response.status !== 200) {
        throw new Error(`GET records: ${response.status} ${await response.text()}`);
      }
      const page = await response.json();
      all.push(...page.results);
      url = page.next;
    }
    return all;
  }

  /** The stored records of one model (each test tracks its own model name). */
  async recordsOf(model, token = this.token) {
    return (await this.records(token)).filter((record) => record.model === model);
  }
}

module.exports = { startServer, waitFor, freePort, HOST, ROOT };
