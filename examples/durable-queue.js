'use strict';
/**
 * A queue of usage records kept in one JSON-lines file, so that nothing tracked is lost
 * when the app crashes, is killed, or quits while offline.
 *
 * Every change rewrites the whole file the safe way: write a temporary file, fsync it,
 * rename it over the old one. A crash at any point leaves either the old file or the new
 * one, never a mix. Changes made while a write is running share the next write, so a burst
 * of records costs two writes, not one per record.
 *
 * On open, anything unreadable is kept aside rather than lost or fatal: the readable lines
 * are kept, and the original file is renamed to `<file>.corrupt-<time>` for a human to look
 * at. A temporary file left by a crash mid-write is merged in (its readable lines) and
 * removed; merging can only resend a record, which the server's event-id check absorbs.
 *
 * One process owns a queue file at a time (Electron apps take the single-instance lock).
 */

const fs = require('fs');
const path = require('path');

class DurableQueue {
  /**
   * Open (or create) the queue at `file`. Synchronous, so a tracker is usable as soon as
   * it is constructed; the file is small and read once per start.
   * `onRecovered({file, keptAside, badLines, mergedFromTemp})` is called when the file
   * needed repair.
   */
  static open(file, { onRecovered } = {}) {
    return new DurableQueue(file, onRecovered);
  }

  constructor(file, onRecovered) {
    this.file = file;
    this.tempFile = `${file}.tmp`;
    this._records = [];
    this._lastWrite = Promise.resolve();
    this._nextWrite = null;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const report = this._load();
    if (report && onRecovered) onRecovered(report);
  }

  get size() {
    return this._records.length;
  }

  /** Copies of the queued records, oldest first. */
  records() {
    return this._records.map((record) => ({ ...record }));
  }

  /** Resolves once `record` is on disk. */
  append(record) {
    if (!record || typeof record.id !== 'string' || !record.id) {
      throw new TypeError('A queued record needs a string id.');
    }
    this._records.push(record);
    return this._save();
  }

  /**
   * The oldest records, at most `maxCount` and about `maxBytes` of JSON (always at least
   * one record, so that an oversized record still reaches the server and gets its answer).
   */
  peek(maxCount, maxBytes = Infinity) {
    const batch = [];
    let bytes = 2;
    for (const record of this._records) {
      if (batch.length >= maxCount) break;
      bytes += JSON.stringify(record).length + 1;
      if (batch.length && bytes > maxBytes) break;
      batch.push(record);
    }
    return batch;
  }

  /**
   * Removes the records with these ids, leaving any appended since they were peeked.
   * Resolves once the removal is on disk.
   */
  remove(ids) {
    const gone = new Set(ids);
    const before = this._records.length;
    this._records = this._records.filter((record) => !gone.has(record.id));
    return this._records.length === before ? this._lastWrite.catch(() => {}) : this._save();
  }

  /** Resolves when every change made so far is on disk (or its write has failed). */
  idle() {
    return (this._nextWrite || this._lastWrite).catch(() => {});
  }

  _save() {
    // One write at a time; every change made while one runs joins the single next write,
    // which serializes the records as they are when it starts.
    if (!this._nextWrite) {
      const next = this._lastWrite
        .catch(() => {})
        .then(() => {
          this._nextWrite = null;
          return writeAtomic(this.file, this.tempFile, serialize(this._records));
        });
      this._nextWrite = next;
      this._lastWrite = next;
    }
    return this._nextWrite;
  }

  _load() {
    const main = readLines(this.file);
    const temp = readLines(this.tempFile);
    const seen = new Set();
    for (const record of [...main.records, ...temp.records]) {
      if (seen.has(record.id)) continue;
      seen.add(record.id);
      this._records.push(record);
    }
    const mergedFromTemp = this._records.length - uniqueCount(main.records);
    let keptAside = null;
    if (main.badLines) {
      keptAside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(this.file, keptAside);
    }
    if (!main.badLines && !temp.exists) return null;
    writeAtomicSync(this.file, this.tempFile, serialize(this._records));
    if (!main.badLines && !mergedFromTemp) return null; // a leftover temp with nothing new
    return { file: this.file, keptAside, badLines: main.badLines, mergedFromTemp };
  }
}

function serialize(records) {
  return records.map((record) => `${JSON.stringify(record)}\n`).join('');
}

function uniqueCount(records) {
  return new Set(records.map((record) => record.id)).size;
}

/** The well-formed records of a queue file, and how many lines were not. */
function readLines(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return { exists: false, records: [], badLines: 0 };
    throw error;
  }
  const records = [];
  let badLines = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const record = parseRecord(line);
    if (record) records.push(record);
    else badLines += 1;
  }
  return { exists: true, records, badLines };
}

function parseRecord(line) {
  try {
    const value = JSON.parse(line);
    const isRecord = value && typeof value === 'object' && !Array.isArray(value);
    return isRecord && typeof value.id === 'string' && value.id ? value : null;
  } catch {
    return null;
  }
}

async function writeAtomic(file, tempFile, text) {
  const handle = await fs.promises.open(tempFile, 'w');
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await renameWithRetry(tempFile, file);
  await syncDirectory(path.dirname(file));
}

function writeAtomicSync(file, tempFile, text) {
  const fd = fs.openSync(tempFile, 'w');
  try {
    fs.writeFileSync(fd, text, 'utf8');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tempFile, file);
}

async function renameWithRetry(from, to) {
  // On Windows a virus scanner or indexer may hold the old file open for a moment.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fs.promises.rename(from, to);
    } catch (error) {
      const transient = ['EPERM', 'EACCES', 'EBUSY'].includes(error.code);
      if (!transient || process.platform !== 'win32' || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
}

async function syncDirectory(dir) {
  // Makes the rename itself durable on Linux; Windows cannot open a directory, and
  // NTFS journals the rename anyway.
  let handle;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => {});
  }
}

module.exports = { DurableQueue };
