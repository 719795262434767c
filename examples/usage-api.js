'use strict';
/**
 * The one client of `POST /api/model-usage` (see docs/api.md): sends a batch and turns
 * whatever comes back, including no answer at all, into one outcome the tracker can act on.
 */

/** The server's limits: records per request, and bytes per body (kept under 1 MiB). */
const MAX_BATCH = 1000;
const MAX_BODY_BYTES = 900 * 1024;
// A Retry-After of hours would only come from a misconfigured proxy; never park for longer.
const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

/**
 * POST `records` and classify the result:
 * - `{kind: 'answered', status, accepted, duplicates, rejected: [{record, errors}]}`:
 *   every record has its outcome (201, 207, or a 400 that names each rejected record);
 * - `{kind: 'auth', status, message}`: 401 or 403, the token will not work as it is;
 * - `{kind: 'wait', status, message, retryAfterMs}`: 429 or 503 with a Retry-After;
 * - `{kind: 'too-large', status, message}`: 413;
 * - `{kind: 'failed', status, message}`: no usable answer (network error, timeout, 5xx,
 *   anything unexpected): retry later with backoff.
 * Any outcome with a response also has `clockOffsetMs` (see `clockOffset`), or null.
 */
async function postRecords({ fetch, baseUrl, token, records, timeoutMs, signal, clock = Date.now }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const abort = () => controller.abort();
  signal?.addEventListener('abort', abort);
  let response;
  let body;
  const sentAt = clock();
  try {
    response = await fetch(`${baseUrl.replace(/\/+$/, '')}/api/model-usage`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(records),
      signal: controller.signal,
    });
    body = parseJson(await response.text());
  } catch (error) {
    const message = controller.signal.aborted && !signal?.aborted
      ? `no answer within ${timeoutMs} ms`
      : describe(error);
    return { kind: 'failed', status: response?.status ?? null, message, clockOffsetMs: null };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
  return { ...classify(response, body, records), clockOffsetMs: clockOffset(response, sentAt, clock()) };
}

/**
 * How far the server's clock is ahead of ours (negative: behind), from one of its answers,
 * or null when it has no Date header. `Date` has whole seconds, so this is good to about a
 * second plus the round trip: plenty to catch a desktop clock that is minutes or hours off.
 */
function clockOffset(response, sentAt, receivedAt) {
  const serverTime = Date.parse(response.headers.get('date') ?? '');
  if (Number.isNaN(serverTime)) return null;
  return serverTime - (sentAt + receivedAt) / 2;
}

/** The server's clock offset from its health check (no token needed), or null. */
async function readServerClock({ fetch, baseUrl, timeoutMs, signal, clock = Date.now }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const abort = () => controller.abort();
  signal?.addEventListener('abort', abort);
  const sentAt = clock();
  try {
    const response = await fetch(`${baseUrl.replace(/\/+$/, '')}/api/health/simple`, {
      signal: controller.signal,
    });
    await response.arrayBuffer();
    return clockOffset(response, sentAt, clock());
  } catch {
    return null; // the POST that follows will say what is wrong, and carries a Date too
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

/**
 * The user's monthly budget as `GET /api/budget` reports it (see docs/api.md), or null when
 * they have none. Throws on no usable answer: a warning is a nicety, so the caller simply
 * tries again later. `budgetWarning` turns the answer into a sentence for the user.
 */
async function readBudget({ fetch, baseUrl, token, timeoutMs, signal }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const abort = () => controller.abort();
  signal?.addEventListener('abort', abort);
  try {
    const response = await fetch(`${baseUrl.replace(/\/+$/, '')}/api/budget`, {
      headers: { Authorization: `Bearer ${token}` },
      signal: controller.signal,
    });
    const body = parseJson(await response.text());
    if (response.status !== 200 || !body || !('budget' in body)) {
      throw new Error(typeof body?.error === 'string' ? body.error : `HTTP ${response.status}`);
    }
    return body.budget === null ? null : body;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

/**
 * A warning for the user when this month's budget is used up to `atPercent` or more, or
 * the month's pace will go past it; null otherwise. Amounts are shown as the server sends
 * them (images, or money with its currency).
 */
function budgetWarning(status, { atPercent = 80 } = {}) {
  if (!status) return null;
  const unit = status.budget.unit === 'money' ? ` ${status.budget.currency}` : ' images';
  const of = `${status.used} of ${status.budget.limit}${unit}`;
  if (status.percent >= 100) return `Your monthly budget is used up: ${of}.`;
  if (status.percent >= atPercent) {
    return `You have used ${status.percent}% of your monthly budget (${of}).`;
  }
  if (status.forecastPercent > 100) {
    return `At this pace you will use ${status.forecast}${unit} this month, over your budget of ${status.budget.limit}${unit}.`;
  }
  return null;
}

function classify(response, body, records) {
  const status = response.status;
  const message = typeof body?.error === 'string' ? body.error : `HTTP ${status}`;
  if (hasOutcomes(body) && (status === 201 || status === 207 || status === 400)) {
    return { kind: 'answered', status, ...outcomes(body, records) };
  }
  if (status === 401 || status === 403) return { kind: 'auth', status, message };
  if (status === 413) return { kind: 'too-large', status, message };
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
  if ((status === 429 || status === 503) && retryAfterMs !== null) {
    return { kind: 'wait', status, message, retryAfterMs };
  }
  // Also a 400 without per-record errors, or a 404 from a wrong baseUrl: the records are
  // fine as far as we know, so they stay queued rather than being thrown away.
  return { kind: 'failed', status, message };
}

function hasOutcomes(body) {
  return (
    body !== null &&
    typeof body === 'object' &&
    Number.isInteger(body.accepted) &&
    Number.isInteger(body.duplicates) &&
    Array.isArray(body.errors)
  );
}

/** The server names rejected records by their index in the array we sent. */
function outcomes(body, records) {
  const byIndex = new Map();
  for (const error of body.errors) {
    const record = records[error?.index];
    if (!record) continue;
    if (!byIndex.has(error.index)) byIndex.set(error.index, { record, errors: [] });
    byIndex.get(error.index).errors.push({
      id: record.id,
      index: error.index,
      field: error.field ?? null,
      message: String(error.message ?? ''),
    });
  }
  return {
    accepted: body.accepted,
    duplicates: body.duplicates,
    rejected: [...byIndex.values()],
  };
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date), or null. */
function parseRetryAfter(value) {
  if (value === null || value === undefined || value.trim() === '') return null;
  let ms;
  if (/^\s*\d+\s*$/.test(value)) ms = Number(value) * 1000;
  else if (!Number.isNaN(Date.parse(value))) ms = Date.parse(value) - Date.now();
  else return null;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function describe(error) {
  // fetch wraps the interesting part (ECONNREFUSED, ENOTFOUND...) in `cause`.
  const cause = error?.cause;
  return cause?.code || cause?.message || error?.message || String(error);
}

module.exports = {
  postRecords,
  readServerClock,
  readBudget,
  budgetWarning,
  parseRetryAfter,
  MAX_BATCH,
  MAX_BODY_BYTES,
};
