// Round trips per decision from node-redis's cluster client, counted by the
// servers: every request the nodes saw for a command (INFO commandstats:
// calls run and rejected with MOVED or ASK; COMMAND GETKEYS calls) over the
// decisions made. sendCommand(firstKey, ...) routes by the key it is given:
// one round trip for RL.SLIDING, RL.TAKE and RL.ALL (its first key).

import { createCluster } from 'redis';
import { CLUSTER_NODES, CLUSTER_URL, NODE_REDIS, check, client, eq, finish } from './harness.mjs';

const WARM_UP = 20;
const DECISIONS = 100;
const CLIENT = `node-redis ${NODE_REDIS} cluster`;

function field(info, line, name) {
  const l = new RegExp(`^${line.replace(/[|.]/g, '\\$&')}:(.*)$`, 'mi').exec(info);
  if (!l) return 0;
  const f = new RegExp(`(?:^|,)${name}=(\\d+)`).exec(l[1]);
  return f ? Number(f[1]) : 0;
}

// What the nodes saw of `command`, summed (the same fields as roundtrips.py).
async function counts(command) {
  const out = { calls: 0, rejected: 0, getkeys: 0, moved: 0, ask: 0 };
  const name = `cmdstat_${command.toLowerCase()}`;
  for (const url of CLUSTER_NODES) {
    const c = await client(2, url);
    const stats = String(await c.sendCommand(['INFO', 'commandstats']));
    const errors = String(await c.sendCommand(['INFO', 'errorstats']));
    out.calls += field(stats, name, 'calls');
    out.rejected += field(stats, name, 'rejected_calls');
    out.getkeys += field(stats, 'cmdstat_command|getkeys', 'calls');
    out.moved += field(errors, 'errorstat_MOVED', 'count');
    out.ask += field(errors, 'errorstat_ASK', 'count');
  }
  return out;
}

const cluster = await createCluster({ rootNodes: [{ url: CLUSTER_URL }] }).connect();
for (const url of CLUSTER_NODES) {
  await (await client(2, url)).sendCommand(['RL.POLICY', 'SET', 'rt-node', 'SLIDING', '1000', '60']);
}

async function measure(command, call, how) {
  for (let i = 0; i < WARM_UP; i++) await call(`{rt-node-warm:${command}:${i}}`);
  const before = await counts(command);
  for (let i = 0; i < DECISIONS; i++) await call(`{rt-node:${command}:${i}}`);
  const after = await counts(command);
  const d = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  const requests = d.calls + d.rejected + d.getkeys;
  const per = requests / DECISIONS;
  console.log(`round-trips: client='${CLIENT}' command=${command} decisions=${DECISIONS} requests=${requests} `
    + `moved=${d.moved} ask=${d.ask} getkeys=${d.getkeys} per_decision=${per.toFixed(2)} expect=1 how='${how}'`);
  eq(d.calls, DECISIONS, `${command}: calls run`);
  eq(per, 1, `${command}: round trips per decision`);
}

await check('RL.SLIDING: one round trip per decision', () =>
  measure('RL.SLIDING', (k) => cluster.sendCommand(k, false, ['RL.SLIDING', k, '1000', '60']),
    'sendCommand(key, false, [...])'));

await check('RL.ALL (first-key form): one round trip per decision', () =>
  measure('RL.ALL', (t) => cluster.sendCommand(`${t}:m`, false, [
    'RL.ALL', `${t}:m`, 'SLIDING', '1000', '60', 'LIMIT', `${t}:d`, 'FIXED', '5000', 'DAY',
  ]), 'sendCommand(firstKey, false, ["RL.ALL", firstKey, ...])'));

await check('RL.TAKE: one round trip per decision', () =>
  measure('RL.TAKE', (k) => cluster.sendCommand(k, false, ['RL.TAKE', k, 'rt-node']),
    'sendCommand(key, false, ["RL.TAKE", key, policy])'));

await cluster.close();
await finish();
