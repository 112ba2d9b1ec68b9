// cluster.mjs: a cluster client routes by the firstKey given to sendCommand.

import { createCluster } from 'redis';
import { CLUSTER_NODES, CLUSTER_URL, check, client, eq, finish, printed, runScript, sameReply } from './harness.mjs';

// INFO errorstats' errorstat_<name> count, summed over the nodes.
async function errors(name) {
  let total = 0;
  for (const url of CLUSTER_NODES) {
    const info = String(await (await client(undefined, url)).sendCommand(['INFO', 'errorstats']));
    const m = new RegExp(`errorstat_${name}:count=(\\d+)`).exec(info);
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

await check("cluster.mjs prints what its comments say, each call sent to its key's node", async () => {
  eq(runScript('cluster.mjs').split('\n').slice(0, -1), printed('cluster.mjs'), "cluster.mjs's output");
  eq(await errors('MOVED'), 0, 'MOVED replies (a call sent to the wrong node)');
  eq(await errors('CROSSSLOT'), 1, "CROSSSLOT replies (the server's, for the keys without a hash tag)");
});

await check('RESP2 cluster connections: the same replies', async () => {
  const replies = {};
  for (const RESP of [2, 3]) {
    const cluster = await createCluster({ rootNodes: [{ url: CLUSTER_URL }], RESP }).connect();
    try {
      const got = [];
      for (let i = 0; i < 20; i++) {
        const key = `user:${RESP}:${i}`;
        got.push(await cluster.sendCommand(key, false, ['RL.SLIDING', key, '10', '60']));
      }
      const all = ['RL.ALL', 'LIMIT', `{p${RESP}}:m`, 'SLIDING', '1', '60', 'LIMIT', `{p${RESP}}:d`, 'FIXED', '5', 'DAY'];
      got.push(await cluster.sendCommand(`{p${RESP}}:m`, false, all));
      got.push(await cluster.sendCommand(`{p${RESP}}:d`, false, all));
      replies[RESP] = got;
    } finally {
      await cluster.close();
    }
  }
  replies[2].forEach((a, i) => sameReply(a, replies[3][i], `call ${i + 1}`));
  const last = replies[3].at(-1);
  eq([...last.slice(0, 3), last[5]], [0, 1, 0, 1], `the second RL.ALL is denied by the minute: ${last}`);
  eq(await errors('MOVED'), 0, 'MOVED replies');
});

await finish();
