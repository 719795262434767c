'use strict';
/** The queue file: what a crash, a kill or a damaged file leaves, and what is kept. */

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

const { DurableQueue } = require('../../examples/durable-queue');
const { spawnChild, tempDir } = require('./fake-app');
const { waitFor } = require('./live-server');

const CHILD = path.join(__dirname, 'queue-writer-child.js');

function record(id) {
  return { id, model: 'Flux', imageCount: 1, timestamp: '2026-11-20T09:30:00.000Z' };
}

function line(value) {
  return `${JSON.stringify(value)}\n`;
}

function ids(queue) {
  return queue.records().map((item) => item.id);
}

test('records survive reopening the queue', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  const queue = DurableQueue.open(file);
  await queue.append(record('a'));
  await queue.append(record('b'));
  await queue.remove(['a']);

  assert.deepEqual(ids(DurableQueue.open(file)), ['b']);
});

test('a damaged queue file keeps its readable records and is kept aside', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'queue.jsonl');
  const cut = '{"id": "b", "model": "Fl\n';
  const damaged = line(record('a')) + cut + line([1, 2]) + line(record('c'));
  fs.writeFileSync(file, damaged);
  const reports = [];

  const queue = DurableQueue.open(file, { onRecovered: (report) => reports.push(report) });

  assert.deepEqual(ids(queue), ['a', 'c']);
  assert.equal(reports.length, 1);
  assert.equal(reports[0].badLines, 2);
  assert.equal(fs.readFileSync(reports[0].keptAside, 'utf8'), damaged);
  assert.match(path.basename(reports[0].keptAside), /^queue\.jsonl\.corrupt-/);
  assert.deepEqual(ids(DurableQueue.open(file)), ['a', 'c'], 'the repaired file is clean');
});

test('a queue file of binary garbage starts an empty queue instead of crashing', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'queue.jsonl');
  fs.writeFileSync(file, Buffer.from([0, 159, 146, 150, 255, 10, 1, 2]));
  const reports = [];

  const queue = DurableQueue.open(file, { onRecovered: (report) => reports.push(report) });

  assert.equal(queue.size, 0);
  assert.ok(fs.existsSync(reports[0].keptAside));
  await queue.append(record('new'));
  assert.deepEqual(ids(DurableQueue.open(file)), ['new']);
});

test('a half-written temp file from a crash is merged in and removed', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  fs.writeFileSync(file, line(record('a')) + line(record('b')));
  // The write that was to add c and d died halfway through d.
  const unfinished = ['a', 'b', 'c'].map((id) => line(record(id))).join('') + '{"id":"d","mo';
  fs.writeFileSync(`${file}.tmp`, unfinished);
  const reports = [];

  const queue = DurableQueue.open(file, { onRecovered: (report) => reports.push(report) });

  assert.deepEqual(ids(queue), ['a', 'b', 'c']);
  assert.equal(reports[0].mergedFromTemp, 1);
  assert.equal(reports[0].keptAside, null);
  assert.equal(fs.existsSync(`${file}.tmp`), false);
  assert.deepEqual(ids(DurableQueue.open(file)), ['a', 'b', 'c']);
});

test('records appended while a batch is out stay when the batch is removed', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  const queue = DurableQueue.open(file);
  await Promise.all(['a', 'b', 'c'].map((id) => queue.append(record(id))));
  const batch = queue.peek(1000);

  const during = ['d', 'e', 'f'].map((id) => queue.append(record(id)));
  const removed = queue.remove(batch.map((item) => item.id));
  during.push(queue.append(record('g')));
  await Promise.all([...during, removed]);

  assert.deepEqual(ids(queue), ['d', 'e', 'f', 'g']);
  assert.deepEqual(ids(DurableQueue.open(file)), ['d', 'e', 'f', 'g']);
});

test('appends made all at once are each on disk when they resolve', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  const queue = DurableQueue.open(file);
  const onDisk = [];
  for (let n = 0; n < 200; n += 1) {
    const id = `r${n}`;
    const appended = queue.append(record(id));
    onDisk.push(appended.then(() => fs.readFileSync(file, 'utf8').includes(`"id":"${id}"`)));
  }

  assert.deepEqual(new Set(await Promise.all(onDisk)), new Set([true]));
  assert.equal(DurableQueue.open(file).size, 200);
});

test('a reader never sees a partly written queue file', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  const writer = spawnChild(t, process.execPath, [CHILD, file, 'w', 'churn'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let written = 0;
  writer.stdout.on('data', (chunk) => (written += chunk.toString().split('\n').length - 1));
  await waitFor(() => written > 0, { what: 'the first write' });

  const seen = new Set();
  for (let reads = 0; reads < 2000 || seen.size < 20; reads += 1) {
    if (reads > 200000) throw new Error('the writer is not changing the file');
    const text = fs.readFileSync(file, 'utf8');
    seen.add(text.length);
    // The writer never holds fewer than 20 records, so an empty read is a torn write too.
    assert.ok(text.endsWith('\n'), `a read ended mid-line: ${JSON.stringify(text.slice(-40))}`);
    for (const row of text.split('\n').filter(Boolean)) JSON.parse(row);
    if (reads % 50 === 0) await new Promise(setImmediate);
  }
});

test('a process killed mid-write leaves a readable file with every acked record', async (t) => {
  const file = path.join(tempDir(t), 'queue.jsonl');
  for (let round = 0; round < 4; round += 1) {
    const acked = [];
    const writer = spawnChild(t, process.execPath, [CHILD, file, `round${round}`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffered = '';
    writer.stdout.on('data', (chunk) => {
      const parts = (buffered + chunk.toString()).split('\n');
      buffered = parts.pop();
      acked.push(...parts);
    });
    const killAfter = 5 + Math.floor(Math.random() * 60);
    await waitFor(() => acked.length >= killAfter, { what: `${killAfter} acknowledged appends` });
    writer.kill('SIGKILL');
    await writer.exited;

    const reports = [];
    const queue = DurableQueue.open(file, { onRecovered: (report) => reports.push(report) });
    assert.deepEqual(reports.filter((report) => report.badLines), [], 'nothing unreadable');
    const kept = new Set(ids(queue));
    assert.deepEqual(acked.filter((id) => !kept.has(id)), [], 'no acknowledged record lost');
  }
});
