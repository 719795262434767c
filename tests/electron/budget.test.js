'use strict';
/**
 * The desktop client reads the user's budget with its API token and warns when the month
 * is nearly used up: against the real site, with a real budget and real records.
 */

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');

const { readBudget, budgetWarning } = require('../../examples/usage-api');
const { startServer } = require('./live-server');

let server;

before(async () => {
  server = await startServer();
});

after(() => server?.close());

function read(token = server.token) {
  return readBudget({ fetch, baseUrl: server.baseUrl, token, timeoutMs: 5000 });
}

async function post(imageCount) {
  const response = await fetch(`${server.baseUrl}/api/model-usage`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'Budget test', imageCount }),
  });
  assert.equal(response.status, 201);
}

test('without a budget there is nothing to warn about', async () => {
  assert.equal(await read(), null);
  assert.equal(budgetWarning(await read()), null);
});

test('a budget nearly used up gives a warning with the numbers', async () => {
  await server.manage(
    'shell',
    '-c',
    "from django.contrib.auth import get_user_model; from usage.budgets import save_budget; " +
      "save_budget(get_user_model().objects.get(username='alice'), unit='images', limit=100, " +
      "thresholds=[50, 80, 100], time_zone='UTC')"
  );
  await post(85);
  const status = await read();
  assert.equal(status.used, 85);
  assert.equal(status.budget.limit, 100);
  assert.equal(budgetWarning(status), 'You have used 85% of your monthly budget (85 of 100 images).');
  await post(15);
  assert.equal(budgetWarning(await read()), 'Your monthly budget is used up: 100 of 100 images.');
});

test('a wrong token is an error, not a budget of nothing', async () => {
  await assert.rejects(read('usg_wrong'), /credentials|token/i);
});
