// partner.mjs and worker.mjs: the exact RL.ALL sent, the seed limits (10 a
// minute, 500 a New York day), and the worker loop with small windows (no
// test waits a minute).

import { check, client, eq, finish, nextMidnightMs, runScript, sameReply, serverMs, within } from './harness.mjs';
import { runWorker, take } from './partner.mjs';

const SEED = 'LIMIT {partner}:minute SLIDING 10 60 LIMIT {partner}:day FIXED 500 DAY TZ America/New_York';

await check('node worker.mjs sends the seed RL.ALL, exactly, and the day ends at New York midnight', async () => {
  const r = await client();
  await r.sendCommand(['CONFIG', 'SET', 'slowlog-log-slower-than', '0']); // log every command
  await r.sendCommand(['SLOWLOG', 'RESET']);
  let out;
  let log;
  try {
    out = runScript('worker.mjs');
    log = await r.sendCommand(['SLOWLOG', 'GET', '128']);
  } finally {
    await r.sendCommand(['CONFIG', 'SET', 'slowlog-log-slower-than', '10000']);
  }
  eq(out, "sent [ 'a' ]\nsent [ 'b', 'c' ]\n", "worker.mjs's output");
  const sent = log.reverse().map((e) => e[3].map(String).join(' ')).filter((c) => c.startsWith('RL.ALL'));
  eq(sent, [`RL.ALL COST 1 ${SEED}`, `RL.ALL COST 2 ${SEED}`], 'the commands the server ran');
  eq(await r.type('{partner}:minute'), 'rl-window', 'TYPE {partner}:minute');
  eq(await r.type('{partner}:day'), 'rl-fixwin', 'TYPE {partner}:day');
  const now = await serverMs(r);
  eq(await r.pExpireTime('{partner}:day'), nextMidnightMs(now), `PEXPIRETIME {partner}:day (server time ${now})`);
  within((await r.pExpireTime('{partner}:minute')) - now, 59000, 60000, "the minute key's TTL");
});

await check('seed limits: the 11th call in a minute is denied by the minute (position 1), RESP2 = RESP3', async () => {
  const replies = {};
  for (const RESP of [2, 3]) {
    const r = await client(RESP);
    const got = [];
    for (let i = 0; i < 11; i++) got.push(await take(r, `seed${RESP}`));
    got.slice(0, 10).forEach((reply, i) => {
      eq([...reply.slice(0, 4), reply[5]], [1, 10, 9 - i, 0, 1], `call ${i + 1}: ${reply}`);
      within(reply[4], 59000, 60000, `call ${i + 1}'s reset_after_ms: ${reply}`);
    });
    const denied = got[10];
    eq([...denied.slice(0, 3), denied[5]], [0, 10, 0, 1], `the 11th: ${denied}`);
    within(denied[3], 59000, 60000, `the 11th's retry_after_ms: ${denied}`);
    within(denied[4], 59000, 60000, `the 11th's reset_after_ms: ${denied}`);
    replies[RESP] = got;
  }
  replies[2].forEach((a, i) => sameReply(a, replies[3][i], `call ${i + 1}, RESP2 vs RESP3`));
});

await check('the day decides once spent (position 2): retry_after_ms is the time to New York midnight', async () => {
  for (const RESP of [2, 3]) {
    const r = await client(RESP);
    for (let i = 0; i < 2; i++) eq((await take(r, `day${RESP}`, 1, { perDay: 2 }))[0], 1, 'allowed');
    const before = await serverMs(r);
    const reply = await take(r, `day${RESP}`, 1, { perDay: 2 });
    const after = await serverMs(r);
    eq([...reply.slice(0, 3), reply[5]], [0, 2, 0, 2], `RESP${RESP}: ${reply}`);
    const midnight = nextMidnightMs(before);
    within(reply[3], midnight - after, midnight - before + 1, `RESP${RESP} retry_after_ms ${reply}`);
    eq(reply[4], reply[3], `RESP${RESP}: the day is fresh again when it fits again: ${reply}`);
  }
});

await check('runWorker, 3 per 0.5 s: 7 batches, never 4 sends within 0.5 s, done in about 1 s', async () => {
  const r = await client();
  const times = [];
  const sent = [];
  const batches = [0, 1, 2, 3, 4, 5, 6].map((i) => [i]);
  await runWorker(r, 'pace', batches, async (batch) => { times.push(performance.now()); sent.push(batch); },
    { perMinute: 3, minuteS: 0.5 });
  const offsets = times.map((t) => Math.round(t - times[0]));
  eq(sent, batches, 'sent');
  for (let i = 0; i + 3 < times.length; i++) {
    // The server admits 3 per 0.5 s on its clock; times here are taken after each reply.
    within(times[i + 3] - times[i], 450, 10000, `sends ${i + 1} and ${i + 4}, send times (ms) ${offsets}`);
  }
  within(offsets[6], 950, 1600, `the 7th send (two waits of 500 ms, jitter at most 50 each): ${offsets}`);
});

await check('runWorker stops on retry_after_ms -1 (a batch above the limit) and takes nothing for it', async () => {
  const r = await client();
  const sent = [];
  const limits = { perMinute: 3, minuteS: 0.5 };
  let error;
  try {
    await runWorker(r, 'big', [['a'], ['b', 'b', 'b', 'b'], ['c']], async (b) => { sent.push(b); }, limits);
  } catch (e) {
    error = e;
  }
  eq(error?.message, 'a batch of 4 exceeds limit 1 (3)', `the error (sent ${JSON.stringify(sent)})`);
  eq(sent, [['a']], 'sent before stopping');
  const peek = await take(r, 'big', 0, limits);
  eq(peek.slice(0, 4), [1, 3, 2, 0], `a peek after: only the first batch was taken: ${peek}`);
  eq((await take(r, 'big', 4, limits))[3], -1, 'retry_after_ms of the batch of 4');
});

await finish();
