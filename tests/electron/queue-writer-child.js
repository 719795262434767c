'use strict';
/**
 * A process that writes to a queue file as fast as it can until it is killed: appends
 * records, printing each id once its append has resolved, and now and then removes the
 * oldest ones so that the file keeps changing size.
 *
 * Usage: node queue-writer-child.js QUEUE_FILE ID_PREFIX
 */

const { DurableQueue } = require('../../examples/durable-queue');

const [file, prefix] = process.argv.slice(2);

async function main() {
  const queue = DurableQueue.open(file);
  for (let n = 0; ; n += 1) {
    const id = `${prefix}-${n}`;
    await queue.append({ id, model: 'Crash test', imageCount: 1, padding: 'x'.repeat(n % 200) });
    process.stdout.write(`${id}\n`);
    if (process.argv[4] === 'churn' && queue.size > 40) {
      await queue.remove(queue.peek(20).map((record) => record.id));
    }
  }
}

main();
