// ratelimit.mjs and server.mjs: the seed limit (10 a minute) over HTTP, and small windows.

import http from 'node:http';
import { HTTP_PORT, check, client, eq, finish, serving, within } from './harness.mjs';
import { handler, rateLimit } from './ratelimit.mjs';

async function get(port, user) {
  const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'X-User': user } });
  const headers = {};
  for (const [k, v] of res.headers) if (/^(ratelimit|retry-after)/.test(k)) headers[k] = v;
  return { status: res.status, headers, body: await res.text() };
}

await check('node server.mjs serves the seed limit: 10 a minute per user, the 11th gets 429', async () => {
  const [seen, bob] = await serving('server.mjs', async () => {
    const s = [];
    for (let i = 0; i < 11; i++) s.push(await get(HTTP_PORT, 'alice'));
    return [s, await get(HTTP_PORT, 'bob')];
  });
  const log = seen.map((s, i) => `  ${i + 1}: ${s.status} ${JSON.stringify(s.headers)}`).join('\n');
  eq(seen.map((s) => s.status), [...Array(10).fill(200), 429], `statuses:\n${log}\n`);
  eq(seen[0].headers, { 'ratelimit-policy': '"api";q=10;w=60', ratelimit: '"api";r=9;t=60' }, 'first');
  eq(seen[0].body, 'hello\n', 'first body');
  eq(seen[10].headers, { 'ratelimit-policy': '"api";q=10;w=60', ratelimit: '"api";r=0;t=60', 'retry-after': '60' },
    `the 11th (the first was well under a second ago):\n${log}\n`);
  eq(seen[10].body, 'too many requests\n', '11th body');
  eq([bob.status, bob.headers.ratelimit], [200, '"api";r=9;t=60'], 'bob has his own limit');
  eq(await (await client()).type('api:alice'), 'rl-window', 'TYPE api:alice');
});

async function smallWindowRun(RESP) {
  const server = http.createServer(handler(await client(RESP), 3, 0.5));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address();
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push(await get(port, `small${RESP}`));
    await new Promise((resolve) => setTimeout(resolve, 550));
    seen.push(await get(port, `small${RESP}`));
    return seen.map((s) => [s.status, s.headers]);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

await check('small window (3 per 0.5 s) through the handler: RESP2 and RESP3 answer the same', async () => {
  const r2 = await smallWindowRun(2);
  const r3 = await smallWindowRun(3);
  eq(r2, r3, 'RESP2 vs RESP3 responses');
  eq(r3.map(([s]) => s), [200, 200, 200, 429, 200], `statuses ${JSON.stringify(r3)}`);
  eq(r3[3][1], { 'ratelimit-policy': '"api";q=3;w=1', ratelimit: '"api";r=0;t=1', 'retry-after': '1' },
    'the denial (under 500 ms to wait: 1 s rounded up)');
  eq(r3[4][1].ratelimit, '"api";r=2;t=1', 'after the window');
});

await check('rateLimit(): Retry-After is retry_after_ms in seconds rounded up, RESP2 and RESP3 alike', async () => {
  for (const RESP of [2, 3]) {
    const r = await client(RESP);
    const user = `ceil${RESP}`;
    for (let i = 0; i < 2; i++) eq((await rateLimit(r, user, 2, 5)).allowed, true, 'allowed');
    const raw = await r.sendCommand(['RL.SLIDING', `api:${user}`, '2', '5', 'DRYRUN']);
    const { allowed, headers } = await rateLimit(r, user, 2, 5);
    eq(allowed, false, `denied (the same call DRYRUN said ${raw})`);
    within(raw[3], 4000, 5000, 'retry_after_ms');
    eq(headers['Retry-After'], '5', `Retry-After for ${raw[3]} ms`);
    eq(headers.RateLimit, '"api";r=0;t=5', 'RateLimit');
  }
});

await check('an error reply becomes 503 and the process lives on (limit 0 is refused)', async () => {
  const server = http.createServer(handler(await client(), 0, 60));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address();
    eq([(await get(port, 'zero')).status, (await get(port, 'zero')).status], [503, 503], 'statuses');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

await finish();
