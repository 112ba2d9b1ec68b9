// connect.mjs, and the reply in RESP2 and RESP3 for every command.

import { readFileSync } from 'node:fs';
import { NODE_REDIS, check, client, eq, finish, printed, respOf, runScript, sameReply } from './harness.mjs';

await check(`node-redis is the pinned ${NODE_REDIS}`, async () => {
  const version = (pkg) => JSON.parse(readFileSync(`node_modules/${pkg}/package.json`, 'utf8')).version;
  eq(version('redis'), NODE_REDIS, 'redis');
  eq(version('@redis/client'), NODE_REDIS, '@redis/client');
});

await check('connect.mjs prints what its comments say', async () => {
  eq(runScript('connect.mjs').split('\n').slice(0, -1), printed('connect.mjs'), "connect.mjs's output");
});

await check('RESP: 3 speaks RESP3, RESP: 2 RESP2, and node-redis 6 speaks RESP3 when not told (CLIENT INFO)', async () => {
  eq([await respOf(await client(3)), await respOf(await client(2)), await respOf(await client())], [3, 2, 3],
    'RESP: 3, RESP: 2, no RESP');
});

await check('every command, allowed and denied: the same array of numbers in RESP2 and RESP3', async () => {
  const r2 = await client(2);
  const r3 = await client(3);
  const calls = [
    ['RL.TOKENBUCKET', '{k}', '2', '1', '1'],
    ['RL.SLIDING', '{k}', '2', '60'],
    ['RL.GCRA', '{k}', '2', '1', '60'],
    ['RL.FIXED', '{k}', '2', 'DAY', 'TZ', 'America/New_York'],
    ['RL.ALL', 'LIMIT', '{k}:a', 'SLIDING', '2', '60', 'LIMIT', '{k}:b', 'FIXED', '5', 'HOUR'],
    ['CL.THROTTLE', '{k}', '1', '1', '60'],
  ];
  for (const call of calls) {
    for (let n = 0; n < 4; n++) { // 2 allowed, 2 denied
      const replies = [];
      for (const [r, tag] of [[r2, 'resp2'], [r3, 'resp3']]) {
        replies.push(await r.sendCommand(call.map((a) => a.replace('{k}', `{${tag}:${call[0]}}`))));
      }
      sameReply(replies[0], replies[1], `${call[0]} call ${n + 1}`);
      if (call[0].startsWith('RL.')) eq(replies[0][0], n < 2 ? 1 : 0, `${call[0]} call ${n + 1}: allowed`);
    }
  }
  const never = [];
  for (const r of [r2, r3]) never.push(await r.sendCommand(['RL.SLIDING', `never${never.length}`, '2', '60', 'COST', '3']));
  eq(never, [[0, 2, 2, -1, 0], [0, 2, 2, -1, 0]], 'a cost above the limit, RESP2 and RESP3');
});

await finish();
