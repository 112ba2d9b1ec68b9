// partner.mjs and worker.mjs: the exact RL.ALL sent (BLOCK included), the
// seed limits (10 a minute, 500 a New York day), and the worker loop with
// small windows (no test waits a minute): paced, first come first served
// among workers, one command per admission, giving up when the wait runs out,
// asking again after a failover or a slot move, polling a module without
// BLOCK, and node-redis's connections and timeouts.

import net from 'node:net';
import { SocketClosedUnexpectedlyError, createClient, createClientPool, createCluster } from 'redis';
import {
  CLUSTER_NODES, CLUSTER_URL, URL, check, client, eq, finish, nextMidnightMs, runScript, sameReply, serverMs, within,
} from './harness.mjs';
import { runWorker, take } from './partner.mjs';

const SEED = 'LIMIT {partner}:minute SLIDING 10 60 LIMIT {partner}:day FIXED 500 DAY TZ America/New_York';
const PACE = { perMinute: 3, minuteS: 0.5 }; // 3 per 0.5 s: the small limit the loops share
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// INFO <section> of a client, as { field: number }.
async function info(c, section) {
  const text = String(await c.sendCommand(['INFO', section]));
  return Object.fromEntries(text.split('\r\n').filter((l) => l.includes(':') && !l.startsWith('#'))
    .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
}

// RL.ALL calls and failed calls since CONFIG RESETSTAT, and INFO ratelimit's wait counters.
async function counters(c) {
  const stat = (await info(c, 'commandstats'))['cmdstat_RL.ALL'] ?? '';
  const field = (name) => Number(new RegExp(`${name}=(\\d+)`).exec(stat)?.[1] ?? 0);
  const waits = Object.fromEntries(Object.entries(await info(c, 'ratelimit'))
    .filter(([k]) => k.includes('wait')).map(([k, v]) => [k.replace('ratelimit_', ''), Number(v)]));
  return { calls: field('calls'), failed: field('failed_calls'), waits };
}

function delta(before, after) {
  return Object.fromEntries(Object.keys(before).filter((k) => k !== 'waiters').map((k) => [k, after[k] - before[k]]));
}

async function waitFor(what, cond, timeoutMs = 10000) {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`never happened within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

async function waiters(c) {
  return Number((await info(c, 'ratelimit')).ratelimit_waiters);
}

// A client with an 'error' listener: a failover closes connections, and
// node-redis emits 'error' (fatal without a listener) before reconnecting.
async function listening(options) {
  const c = createClient({ url: URL, ...options });
  c.on('error', () => {});
  return c.connect();
}

// Sends at most 3 in any 0.5 s, 7 batches of one in about 1 s.
function paced(times, sent, batches, last) {
  const offsets = times.map((t) => Math.round(t - times[0]));
  eq(sent, batches, 'sent');
  for (let i = 0; i + 3 < times.length; i++) {
    // The server admits 3 per 0.5 s on its clock; times here are taken after each reply.
    within(times[i + 3] - times[i], 400, 10000, `sends ${i + 1} and ${i + 4}, send times (ms) ${offsets}`);
  }
  within(offsets[6], ...last, `the 7th send (two turns of 500 ms): ${offsets}`);
}

await check('node worker.mjs: two workers on a pool send the seed RL.ALL with BLOCK, exactly; the day ends at New York midnight', async () => {
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
  // The two workers run at once: their lines come in either order.
  eq(out.split('\n').slice(0, -1).sort(), ["sent [ 'a' ]", "sent [ 'b', 'c' ]", "sent [ 'd' ]"], "worker.mjs's output");
  const sent = log.reverse().map((e) => e[3].map(String).join(' ')).filter((c) => c.startsWith('RL.ALL'));
  for (const c of sent) {
    const m = /^RL\.ALL BLOCK (\d+) /.exec(c);
    if (!m) throw new Error(`RL.ALL without BLOCK first: ${c}`);
    within(Number(m[1]), 299000, 300000, `BLOCK's timeout (what is left of maxWaitMs 300000) in ${c}`);
  }
  eq(sent.map((c) => c.replace(/BLOCK \d+/, 'BLOCK ms')).sort(),
    [`RL.ALL BLOCK ms COST 1 ${SEED}`, `RL.ALL BLOCK ms COST 1 ${SEED}`, `RL.ALL BLOCK ms COST 2 ${SEED}`],
    'the commands the server ran');
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

await check('runWorker, 3 per 0.5 s: 7 batches paced by waiting in line, one RL.ALL each, done in about 1 s', async () => {
  const r = await client();
  await r.sendCommand(['CONFIG', 'RESETSTAT']);
  const before = await counters(r);
  const times = [];
  const sent = [];
  const batches = [0, 1, 2, 3, 4, 5, 6].map((i) => [i]);
  await runWorker(r, 'pace', batches, async (batch) => { times.push(performance.now()); sent.push(batch); }, PACE);
  paced(times, sent, batches, [950, 1300]);
  const after = await counters(r);
  eq([after.calls, after.failed], [7, 0], 'RL.ALL calls, failed: one per batch, no polling');
  const waits = delta(before.waits, after.waits);
  // Batches 4 and 7 wait a turn; 5 and 6 too when they come before the
  // units of batches 2 and 3 leave (a millisecond or two later).
  within(waits.waits_started, 2, 4, `INFO ratelimit waits_started: ${JSON.stringify(waits)}`);
  eq(waits, { ...waits, waits_admitted: waits.waits_started, waits_timed_out: 0, waits_cancelled: 0, waits_refused: 0 },
    'INFO ratelimit: every wait admitted');
});

await check('4 workers on 3 per 0.5 s: served in turn, one RL.ALL per admission; RESP2 on a pool, RESP3 on duplicate()s', async () => {
  for (const RESP of [2, 3]) {
    const admin = await client(RESP);
    // A pool lends each command a connection; duplicate() gives each worker its own.
    const pool = RESP === 2 ? await createClientPool({ url: URL, RESP }, { maximum: 4 }).connect() : null;
    const own = RESP === 3 ? await Promise.all([0, 1, 2, 3].map(() => admin.duplicate().connect())) : [];
    try {
      const name = `fifo${RESP}`;
      eq((await take(admin, name, 3, PACE))[0], 1, '3 calls at once: every worker starts in line');
      const start = performance.now();
      await admin.sendCommand(['CONFIG', 'RESETSTAT']);
      const before = await counters(admin);
      const admitted = []; // [ms after the first 3 calls, worker]
      await Promise.all([0, 1, 2, 3].map((w) => runWorker(pool ?? own[w], name, [[w], [w], [w]],
        async () => { admitted.push([Math.round(performance.now() - start), w]); }, { maxWaitMs: 10000, ...PACE })));
      const trace = JSON.stringify(admitted);
      eq(admitted.length, 12, `RESP${RESP} admissions ([ms after the first 3 calls, worker]): ${trace}`);
      // Turns: the 3 units free up together every 0.5 s and go to the first 3
      // in line, first come first served. Workers answered in the same turn
      // rejoin the line in the order their calls reach the server, so the line
      // guarantees: while at least 3 workers have batches left, a turn admits
      // 3 different workers, and no worker misses two turns in a row.
      const turns = new Map();
      for (const [t, w] of admitted) turns.set(Math.round(t / 500), [...(turns.get(Math.round(t / 500)) ?? []), w]);
      eq([...turns.keys()], [1, 2, 3, 4], `RESP${RESP}: turns, at 500, 1000, 1500 and 2000 ms: ${trace}`);
      const left = [3, 3, 3, 3];
      for (const [k, ws] of turns) {
        eq(ws.length, 3, `RESP${RESP}: turn ${k}'s admissions: ${trace}`);
        if (left.filter((n) => n > 0).length >= 3) {
          eq([...new Set(ws)].sort(), [...ws].sort(), `RESP${RESP}: turn ${k}, a worker at most once: ${trace}`);
        }
        for (const w of ws) left[w] -= 1;
      }
      for (const k of [1, 2]) {
        const served = [...new Set([...turns.get(k), ...turns.get(k + 1)])].sort();
        eq(served, [0, 1, 2, 3], `RESP${RESP}: every worker served in turns ${k} and ${k + 1}: ${trace}`);
      }
      const after = await counters(admin);
      eq([after.calls, after.failed], [12, 0], `RESP${RESP}: RL.ALL calls, failed: one per admission, no polling`);
      const waits = delta(before.waits, after.waits);
      // The last calls may find a unit free and nobody waiting: admitted at once.
      if (waits.waits_started < 10 || waits.waits_started > 12) {
        throw new Error(`RESP${RESP}: INFO ratelimit: calls that waited: ${JSON.stringify(waits)}`);
      }
      eq(waits, { waits_started: waits.waits_started, waits_admitted: waits.waits_started, waits_timed_out: 0,
        waits_cancelled: 0, waits_refused: 0 }, `RESP${RESP}: INFO ratelimit: every call that waited in line got in`);
    } finally {
      if (pool) await pool.close();
      for (const c of own) await c.close();
    }
  }
});

await check('a call without BLOCK cannot jump the line: denied while a batch waits, its retryAfterMs counts the batch', async () => {
  const r = await client();
  const waiting = await client();
  const limits = { perMinute: 2, minuteS: 1 };
  eq((await take(r, 'jump', 1, limits))[0], 1, 'call 1');
  await sleep(500);
  eq((await take(r, 'jump', 1, limits))[0], 1, 'call 2: the limit spent');
  const t2 = performance.now(); // call 1's unit leaves within 500 ms, call 2's within 1000 ms
  const batch = take(waiting, 'jump', 2, { blockMs: 5000, ...limits }).then((reply) => [reply, performance.now() - t2]);
  await waitFor('the batch of 2 waits in line', async () => (await waiters(r)) === 1);
  await sleep(t2 + 700 - performance.now());
  const p0 = performance.now();
  const reply = await take(r, 'jump', 1, limits); // call 1's unit is free, but the batch is first in line
  const p1 = performance.now();
  const [waited, at] = await batch;
  eq(reply.slice(0, 3), [0, 2, 0], `the call without BLOCK: ${reply}`);
  eq(waited[0], 1, `the batch: ${waited}`);
  within(at, 900, 2000, "the batch got in when call 2's unit left (ms after call 2)");
  within(p1 - t2, 500, at, 'the call without BLOCK came once call 1\'s unit left, and before the batch got in');
  // Its wait: the batch gets in when call 2's unit leaves, and holds both units 1 s.
  within(reply[3], t2 + 2000 - p1 - 100, t2 + 2000 - p0 + 1, `its retry_after_ms: ${reply}`);
});

await check('one connection per client: a command behind a waiting RL.ALL waits for it; on a pool or a duplicate() it does not', async () => {
  const r = await client();
  const limits = { perMinute: 1, minuteS: 10 };
  eq((await take(r, 'hol', 1, limits))[0], 1, 'the one call of 10 s');
  const pool = await createClientPool({ url: URL }).connect();
  const other = await r.duplicate().connect();
  try {
    for (const [what, c, first] of [['the same client', r, 'RL.ALL'], ['a duplicate()', other, 'PING'], ['the pool', pool, 'PING']]) {
      const order = [];
      const start = performance.now();
      const waiting = take(what === 'the pool' ? pool : r, 'hol', 1, { blockMs: 400, ...limits })
        .then((reply) => { order.push('RL.ALL'); return reply; });
      const ping = c.sendCommand(['PING']).then((pong) => { order.push('PING'); return [pong, performance.now() - start]; });
      const [[pong, pinged], reply] = await Promise.all([ping, waiting]);
      eq(pong, 'PONG', `PING on ${what}`);
      eq(reply.slice(0, 3), [0, 1, 0], 'the wait ends at its timeout, denied');
      eq(order[0], first, `PING on ${what}, sent while RL.ALL waits 400 ms: answered first (${Math.round(pinged)} ms)`);
      if (first === 'RL.ALL') within(pinged, 400, 10000, `PING on ${what} answered after (ms)`);
    }
  } finally {
    await pool.close();
    await other.close();
  }
});

await check('runWorker gives up when its wait runs out, after one RL.ALL, taking nothing', async () => {
  const r = await client();
  const limits = { perMinute: 1, minuteS: 10 };
  eq((await take(r, 'late', 1, limits))[0], 1, 'the one call of 10 s');
  await r.sendCommand(['CONFIG', 'RESETSTAT']);
  const before = await counters(r);
  const sent = [];
  const start = performance.now();
  let error;
  try {
    await runWorker(r, 'late', [['x']], async (b) => { sent.push(b); }, { maxWaitMs: 300, ...limits });
  } catch (e) {
    error = e;
  }
  eq(error?.message, 'a batch of 1 waited 300 ms', `the error (sent ${JSON.stringify(sent)})`);
  within(performance.now() - start, 300, 1000, 'gave up after (ms)');
  const after = await counters(r);
  eq(after.calls, 1, 'RL.ALL calls: one wait, no polling');
  eq(delta(before.waits, after.waits).waits_timed_out, 1, 'INFO ratelimit waits_timed_out');
  eq((await take(r, 'late', 0, limits)).slice(0, 3), [1, 1, 0], 'a peek: still only the first call taken');
});

await check('runWorker stops on retry_after_ms -1 (a batch above the limit) at once, and takes nothing for it', async () => {
  const r = await client();
  const sent = [];
  const start = performance.now();
  let error;
  try {
    await runWorker(r, 'big', [['a'], ['b', 'b', 'b', 'b'], ['c']], async (b) => { sent.push(b); }, PACE);
  } catch (e) {
    error = e;
  }
  eq(error?.message, 'a batch of 4 exceeds limit 1 (3)', `the error (sent ${JSON.stringify(sent)})`);
  within(performance.now() - start, 0, 1000, 'stopped after (ms; BLOCK answers -1 at once, not after max_wait)');
  eq(sent, [['a']], 'sent before stopping');
  const peek = await take(r, 'big', 0, PACE);
  eq(peek.slice(0, 4), [1, 3, 2, 0], `a peek after: only the first batch was taken: ${peek}`);
  eq((await take(r, 'big', 4, PACE))[3], -1, 'retry_after_ms of the batch of 4');
});

// REPLICAOF a port nothing listens on, and back, both at once (pipelined):
// the server is a replica for no time.
async function failover(admin) {
  const dead = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
  await Promise.all([admin.sendCommand(['REPLICAOF', '127.0.0.1', String(dead)]), admin.sendCommand(['REPLICAOF', 'NO', 'ONE'])]);
}

// CLIENT KILL the connection that waits (flags=b): a connection lost.
async function killWaiting(admin) {
  const ids = String(await admin.sendCommand(['CLIENT', 'LIST'])).split('\n')
    .filter((l) => /\bflags=\w*b/.test(l)).map((l) => /\bid=(\d+)/.exec(l)[1]);
  eq(ids.length, 1, 'connections waiting');
  await admin.sendCommand(['CLIENT', 'KILL', 'ID', ids[0]]);
}

await check('a failover (REPLICAOF and back) ends the wait with UNBLOCKED, a lost connection with SocketClosedUnexpectedlyError: '
  + 'runWorker asks again, gets in, one unit taken', async () => {
  const admin = await listening();
  for (const [name, interrupt, first] of [['fo', failover, 'UNBLOCKED'], ['kill', killWaiting, 'SocketClosedUnexpectedlyError']]) {
    const r = await listening();
    const limits = { perMinute: 2, minuteS: 0.5 };
    eq((await take(r, name, 2, limits))[0], 1, "2 calls: the second's limit spent");
    await admin.sendCommand(['CONFIG', 'RESETSTAT']);
    const before = await counters(admin);
    const sent = [];
    const errors = [];
    const seen = { sendCommand: (args) => r.sendCommand(args).catch((e) => { errors.push(e); throw e; }) };
    const start = performance.now();
    const worker = runWorker(seen, name, [['x']], async (b) => { sent.push(b); }, { maxWaitMs: 10000, ...limits });
    try {
      await waitFor('the worker waits in line', async () => (await waiters(admin)) === 1);
      await interrupt(admin);
    } finally {
      await worker;
    }
    eq(sent, [['x']], `${name}: sent`);
    // After UNBLOCKED, a call sent before the connection was seen closing gets SocketClosedUnexpectedlyError.
    const names = errors.map((e) => (e instanceof SocketClosedUnexpectedlyError ? e.constructor.name : e.message.split(' ')[0]));
    if (names[0] !== first || names.slice(1).some((n) => n !== 'SocketClosedUnexpectedlyError')) {
      throw new Error(`${name}: errors that reached runWorker, ${first} first: ${names}`);
    }
    console.log(`# ${name}: errors that reached runWorker: ${names.join(', ')}`);
    within(performance.now() - start, 400, 1500, `${name}: admitted when the window let it in (ms)`);
    const after = await counters(admin);
    eq(after.calls, 2, `${name}: RL.ALL calls: the one interrupted, the one asked again`);
    eq(delta(before.waits, after.waits),
      { waits_started: 2, waits_admitted: 1, waits_timed_out: 0, waits_cancelled: 1, waits_refused: 0 }, `${name}: INFO ratelimit`);
    eq((await take(r, name, 0, limits)).slice(0, 3), [1, 2, 1], `${name}: a peek: one unit in the window, the worker's`);
    await r.close();
  }
  await admin.close();
});

await check("a slot that moves while the worker waits: TRYAGAIN to runWorker, which asks again; the cluster client follows the MOVED", async () => {
  const cluster = await createCluster({ rootNodes: [{ url: CLUSTER_URL }] }).on('error', () => {}).connect();
  const worker = await cluster.duplicate().on('error', () => {}).connect(); // its own connection to each node
  const nodes = await Promise.all(CLUSTER_NODES.map((url) => client(undefined, url)));
  const keys = ['{mv}:minute', '{mv}:day'];
  const slot = Number(await nodes[0].sendCommand(['CLUSTER', 'KEYSLOT', keys[0]]));
  const ports = CLUSTER_NODES.map((u) => Number(new globalThis.URL(u).port));
  const ids = await Promise.all(nodes.map(async (n) => String(await n.sendCommand(['CLUSTER', 'MYID']))));
  const ownerEverywhere = async (i) => (await Promise.all(nodes.map(async (n) => (await n.sendCommand(['CLUSTER', 'SLOTS']))
    .some(([lo, hi, owner]) => lo <= slot && slot <= hi && Number(owner[1]) === ports[i])))).every(Boolean);
  let src = -1;
  for (let i = 0; i < nodes.length; i++) if (await ownerEverywhere(i)) src = i;
  if (src < 0) throw new Error(`no node owns slot ${slot} as every node says`);
  const dst = (src + 1) % nodes.length;
  async function move(from, to, moving = []) {
    await nodes[to].sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', ids[from]]);
    await nodes[from].sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', ids[to]]);
    if (moving.length) {
      await nodes[from].sendCommand(['MIGRATE', '127.0.0.1', String(ports[to]), '', '0', '5000', 'KEYS', ...moving]);
    }
    for (const i of [to, from]) await nodes[i].sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'NODE', ids[to]]);
    await waitFor(`every node sees slot ${slot} on node ${to}`, () => ownerEverywhere(to));
  }
  // runWorker sends `redis.sendCommand(args)`: on a cluster, route by the first key.
  const errors = [];
  const errorsAt = []; // when each error reached runWorker (ms after start)
  const viaCluster = (c) => ({
    sendCommand: (args) => c.sendCommand(args[args.indexOf('LIMIT') + 1], false, args)
      .catch((e) => { errors.push(e.message); errorsAt.push(performance.now() - start); throw e; }),
  });
  const limits = { perMinute: 2, minuteS: 1 };
  const tryagains = async () => Number(/errorstat_TRYAGAIN:count=(\d+)/.exec(String(await nodes[src].sendCommand(['INFO', 'errorstats'])))?.[1] ?? 0);
  eq((await take(viaCluster(cluster), 'mv', 2, limits))[0], 1, "2 calls: the second's limit spent");
  const sent = [];
  const start = performance.now();
  const running = runWorker(viaCluster(worker), 'mv', [['x']], async (b) => { sent.push(b); }, { maxWaitMs: 10000, ...limits });
  try {
    await waitFor('the worker waits in line', async () => (await waiters(nodes[src])) === 1);
    // The cluster client the worker does not use answers at once.
    const t = performance.now();
    eq(await cluster.sendCommand(keys[0], false, ['EXISTS', keys[0]]), 1, 'EXISTS on the other cluster client');
    within(performance.now() - t, 0, 500, 'EXISTS on the other cluster client answered after (ms), the wait lasting 1 s');
    // The worker's cluster client: its command to the node waits behind the RL.ALL.
    // (The day's key: the minute's expires when its units leave, as the wait ends.)
    const behind = worker.sendCommand(keys[1], false, ['EXISTS', keys[1]]).then((n) => [n, performance.now() - start]);
    const before = [(await counters(nodes[src])).waits.waits_cancelled, await tryagains()];
    await move(src, dst, keys);
    await running;
    const [exists, answered] = await behind;
    eq(exists, 1, "EXISTS {mv}:day on the worker's cluster client (redirected to the new node)");
    // The move ends the wait at once (the keys' values leave the node: the
    // line is checked again, and the slot is gone): TRYAGAIN, then EXISTS.
    if (!(errorsAt.length > 0 && answered >= errorsAt[0] && answered <= 3000)) {
      throw new Error(`EXISTS on the worker's cluster client answered after ${answered} ms: want once the RL.ALL was (its TRYAGAIN at ${errorsAt[0]} ms), within 3 s`);
    }
    eq(sent, [['x']], 'sent');
    within(performance.now() - start, 850, 3000, 'admitted when the window let it in (ms)');
    eq([(await counters(nodes[src])).waits.waits_cancelled - before[0], (await tryagains()) - before[1]], [1, 1],
      'waits cancelled on the old node, TRYAGAIN replies there');
    eq(errors.map((m) => m.split(' ')[0]), ['TRYAGAIN'], 'errors that reached runWorker: node-redis hands TRYAGAIN on');
    const peek = await nodes[dst].sendCommand(['RL.SLIDING', keys[0], '2', '1', 'COST', '0']);
    eq(peek.slice(0, 3), [1, 2, 1], "a peek on the new node: one unit in the window, the worker's");
  } finally {
    await running.catch(() => {});
    await nodes[dst].sendCommand(['DEL', ...keys]);
    await move(dst, src); // back where it was, for the tests after this one
    await worker.close();
    await cluster.close();
  }
});

await check("node-redis 6's timeouts: the command timeout (5000 ms) stops at the write, a socketTimeout closes the client", async () => {
  const admin = await client();
  eq(admin._commandOptions, { timeout: 5000 }, "a client's default command options");
  const limits = { perMinute: 1, minuteS: 10 };
  eq((await take(admin, 'tmo', 1, limits))[0], 1, 'the one call of 10 s');
  // A command timeout shorter than the wait: the reply still comes, at the end of the wait.
  const short = await listening({ commandOptions: { timeout: 200 } });
  let start = performance.now();
  eq((await take(short, 'tmo', 1, { blockMs: 600, ...limits })).slice(0, 3), [0, 1, 0], 'denied when the wait ran out');
  within(performance.now() - start, 600, 1500, 'answered after (ms)');
  await short.close();
  // A socket timeout shorter than the wait: an error, and the client closes for good.
  const before = (await counters(admin)).waits;
  const socket = await listening({ socket: { socketTimeout: 300 } });
  start = performance.now();
  let error;
  try {
    await take(socket, 'tmo', 1, { blockMs: 1000, ...limits });
  } catch (e) {
    error = e;
  }
  eq(error?.constructor.name, 'SocketTimeoutError', `the error: ${error?.message}`);
  within(performance.now() - start, 290, 1000, 'failed after (ms)'); // (timers may fire a hair early)
  await waitFor('the client closes', () => !socket.isOpen, 2000);
  eq([socket.isOpen, socket.isReady], [false, false], 'the client is closed (isOpen, isReady)');
  await waitFor('the server drops the request', async () => (await waiters(admin)) === 0);
  eq(delta(before, (await counters(admin)).waits).waits_cancelled, 1, 'INFO ratelimit waits_cancelled');
  // A pool's connections all waiting: another command waits acquireTimeout for one, then fails.
  const pool = await createClientPool({ url: URL }, { maximum: 1, acquireTimeout: 200 }).connect();
  try {
    const waiting = take(pool, 'tmo', 1, { blockMs: 500, ...limits });
    start = performance.now();
    let poolError;
    try {
      await pool.sendCommand(['PING']);
    } catch (e) {
      poolError = e;
    }
    eq(poolError?.message, 'Timeout waiting for a client after 200ms', 'the PING behind the wait');
    within(performance.now() - start, 190, 1000, 'failed after (ms)'); // (timers may fire a hair early)
    eq((await waiting).slice(0, 3), [0, 1, 0], 'the wait itself ends at its timeout');
  } finally {
    await pool.close();
  }
});

// The server as a module without BLOCK answers runWorker: BLOCK is an unknown
// option there, so it is sent as one here (the module answers `ERR syntax
// error` from the same place).
// BLOCK sent as an unknown option, moved to the end (an unknown first word
// would start RL.ALL's first-key form).
const withoutBlock = (r) => ({
  sendCommand: (args) => {
    const i = args.indexOf('BLOCK');
    return r.sendCommand(i < 0 ? args : [...args.slice(0, i), ...args.slice(i + 2), 'NOBLOCK', args[i + 1]]);
  },
});

await check('a module without BLOCK (ERR syntax error): runWorker polls instead, paced as before', async () => {
  const r = await client();
  await r.sendCommand(['CONFIG', 'RESETSTAT']);
  const before = await counters(r);
  const times = [];
  const sent = [];
  const batches = [0, 1, 2, 3, 4, 5, 6].map((i) => [i]);
  await runWorker(withoutBlock(r), 'old', batches, async (batch) => { times.push(performance.now()); sent.push(batch); }, PACE);
  paced(times, sent, batches, [950, 1600]); // two sleeps of up to 500 ms, jitter at most 50 each
  const after = await counters(r);
  eq(after.failed, 1, 'RL.ALL calls failed: the first, with BLOCK');
  within(after.calls, 1 + 7 + 2, 1 + 7 + 10, 'RL.ALL calls: the failed one, 7 allowed, a few denied (polls)');
  eq(delta(before.waits, after.waits).waits_started, 0, 'INFO ratelimit waits_started');
});

await finish();
