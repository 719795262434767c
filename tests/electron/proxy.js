'use strict';
/**
 * A loopback HTTP proxy in front of the real server: a fake at the process boundary that
 * lets a test see every request, hold one, or lose an answer on purpose.
 */

const http = require('http');
const { HOST } = require('./live-server');

/**
 * Start a proxy to `127.0.0.1:targetPort`. Hooks, all optional and possibly async, run for
 * POSTs (the batches) only; anything else (the tracker's clock check) goes straight through:
 * - `beforeForward(exchange)`: runs before the request goes on (never resolving holds it);
 * - `beforeRelay(exchange)`: runs with the server's answer in hand; returning 'drop'
 *   closes the client's connection instead of relaying the answer.
 * `exchanges` lists every request: method, path, records (batch size), status, times.
 */
async function startProxy({ targetPort, beforeForward, beforeRelay } = {}) {
  const exchanges = [];
  const server = http.createServer(async (req, res) => {
    const body = await readAll(req);
    const exchange = {
      method: req.method,
      path: req.url,
      records: countRecords(body),
      receivedAt: Date.now(),
      status: null,
      answeredAt: null,
    };
    exchanges.push(exchange);
    try {
      const batch = req.method === 'POST';
      if (batch && beforeForward) await beforeForward(exchange);
      const answer = await forward(targetPort, req, body);
      exchange.status = answer.status;
      exchange.answeredAt = Date.now();
      exchange.answer = answer;
      if (batch && beforeRelay && (await beforeRelay(exchange)) === 'drop') {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    } catch {
      req.socket.destroy(); // the server is unreachable: the client sees a network error
    }
  });
  await new Promise((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address();
  return {
    port,
    baseUrl: `http://${HOST}:${port}`,
    exchanges,
    posts: () => exchanges.filter((exchange) => exchange.method === 'POST'),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function countRecords(body) {
  try {
    const value = JSON.parse(body.toString('utf8'));
    return Array.isArray(value) ? value.length : 1;
  } catch {
    return null;
  }
}

function forward(port, req, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: `${HOST}:${port}`, 'content-length': body.length };
    delete headers['transfer-encoding'];
    delete headers.connection;
    const upstream = http.request(
      { host: HOST, port, method: req.method, path: req.url, headers },
      async (response) => {
        try {
          const answerBody = await readAll(response);
          const answerHeaders = { ...response.headers };
          delete answerHeaders['transfer-encoding'];
          delete answerHeaders.connection;
          answerHeaders['content-length'] = answerBody.length;
          resolve({ status: response.statusCode, headers: answerHeaders, body: answerBody });
        } catch (error) {
          reject(error);
        }
      }
    );
    upstream.on('error', reject);
    upstream.end(body);
  });
}

module.exports = { startProxy };
