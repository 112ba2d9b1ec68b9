// gateway.mjs: an AI gateway reserves an estimate and settles the actual
// count (RL.ALL ... ESTIMATE, RL.SETTLE): debt, give-back, expiry, twice.

import { createCluster } from 'redis';
import { CLUSTER_NODES, CLUSTER_URL, check, client, eq, finish, printed, runScript, within } from './harness.mjs';
import { LIMITS, callModel, onClient, onCluster, reserve, settle } from './gateway.mjs';

const SMALL = { ...LIMITS, tpm: 1000, tpd: 5000 }; // seconds of debt, a day's count exact
const WIDE = { ...SMALL, tpm: 100000 }; // the day binds
const model = (used) => async () => ({ answer: 'answer', used });
const send = onClient(await client());

await check('gateway.mjs prints what its comments say', async () => {
  eq(runScript('gateway.mjs').split('\n').slice(0, -1), printed('gateway.mjs'), "gateway.mjs's output");
});

await check('above the estimate: the key is in debt, the next reservation is denied with retry_after > 0', async () => {
  const { answer, reply } = await callModel(send, 'debt', 'p', 100, model(1500), SMALL);
  eq(answer, 'answer', 'the answer');
  eq(reply.slice(0, 3), [1, 1000, 0], 'settlement: settled, the tpm limit, remaining 0');
  within(reply[3], 20000, 60000, 'settlement: retryAfterMs (500 tokens of debt + 1 at 60 ms each)');
  eq(reply[5], 1, 'settlement: the binding key, 1st after the anchor (tpm)');
  const denied = await callModel(send, 'debt', 'p', 0, model(0), SMALL);
  eq(denied.answer, undefined, 'no answer while in debt');
  const d = denied.reply;
  eq([d[0], d[1], d[2], d[5], d[6]], [0, 1000, 0, 2, '0'], `denied by the tpm (2nd limit), no lease: ${d}`);
  within(d[3], 20000, 60000, 'denial: retryAfterMs');
});

await check("below the estimate: the unused tokens come back (the day's count is exact)", async () => {
  const { reply } = await callModel(send, 'back', 'p', 4000, model(300), WIDE);
  eq(reply.slice(0, 3), [1, 5000, 4699], "settlement: the day's 5000 less 300, less one token");
  const again = await callModel(send, 'back', 'p', 4600, model(4600), WIDE);
  eq(again.reply.slice(0, 3), [1, 5000, 99], '4600 more fit because 3700 came back');
});

await check('an exception in the model: settled at the estimate, the slot freed', async () => {
  let thrown;
  try {
    await callModel(send, 'boom', 'p', 700, async () => { throw new Error('model down'); }, WIDE);
  } catch (e) {
    thrown = e.message;
  }
  eq(thrown, 'model down', "the model's exception");
  const { reply } = await callModel(send, 'boom', 'p', 0, model(0), { ...WIDE, inFlight: 1 });
  eq(reply.slice(0, 3), [1, 5000, 4299], '700 charged (the estimate), the one slot free again');
});

await check('a forgotten reservation ends with its lease, settled at its estimate; settling twice answers 0', async () => {
  const limits = { ...WIDE, inFlight: 1, leaseS: 1 };
  const first = await reserve(send, 'lost', 1200, limits);
  eq(first[0], 1, `reserved: ${first}`);
  const full = await reserve(send, 'lost', 0, limits);
  eq([...full.slice(0, 3), ...full.slice(5)], [0, 1, 0, 1, '0'], `the one slot is taken: ${full}`);
  await new Promise((resolve) => setTimeout(resolve, 1300)); // the lease (1 s) ends: the gateway "died"
  eq(await settle(send, 'lost', first[6], 10), [0, 0, 0, 0, 0, 0], 'a settlement after the lease');
  const second = await reserve(send, 'lost', 0, limits);
  eq(second[0], 1, `the slot came back: ${second}`);
  eq((await settle(send, 'lost', second[6], 0)).slice(0, 3), [1, 5000, 3799],
    'the day kept the 1200 estimate (5000 - 1200 - 1)');
  eq(await settle(send, 'lost', second[6], 0), [0, 0, 0, 0, 0, 0], 'settling twice');
});

await check('in a cluster: RL.ALL and RL.SETTLE sent to the anchor\'s node (no MOVED)', async () => {
  const moved = async () => {
    let total = 0;
    for (const url of CLUSTER_NODES) {
      const info = String(await (await client(undefined, url)).sendCommand(['INFO', 'errorstats']));
      const m = /errorstat_MOVED:count=(\d+)/.exec(info);
      total += m ? Number(m[1]) : 0;
    }
    return total;
  };
  const before = await moved();
  const cluster = await createCluster({ rootNodes: [{ url: CLUSTER_URL }] }).connect();
  try {
    const { reply } = await callModel(onCluster(cluster), 'ckey', 'p', 100, model(1500), SMALL);
    eq(reply.slice(0, 3), [1, 1000, 0], `in debt: ${reply}`);
    const denied = await callModel(onCluster(cluster), 'ckey', 'p', 1, model(1), SMALL);
    eq(denied.reply[0], 0, `denied: ${denied.reply}`);
    within(denied.reply[3], 1, 60000, 'denial: retryAfterMs');
  } finally {
    await cluster.close();
  }
  eq(await moved() - before, 0, 'MOVED replies');
});

await finish();
