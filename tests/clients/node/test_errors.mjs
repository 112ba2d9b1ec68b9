// errors.mjs: how node-redis rejects with the module's error replies.

import { ErrorReply } from 'redis';
import { check, client, eq, finish, printed, runScript } from './harness.mjs';

await check('errors.mjs prints what its comments say', async () => {
  eq(runScript('errors.mjs').split('\n').slice(0, -1), printed('errors.mjs'), "errors.mjs's output");
});

await check('an error changes nothing: no key for the refused calls', async () => {
  const r = await client();
  eq(await r.exists(['api:alice', 'api:carol']), 0, 'EXISTS api:alice api:carol');
  eq(await r.get('api:bob'), 'not a limiter', 'api:bob untouched');
});

await check('the same rejections in RESP2 and RESP3; arity and syntax errors too', async () => {
  const calls = [
    [['RL.SLIDING', 'e', '0', '60'], 'ERR limit must be an integer between 1 and 9223372036854775807'],
    [['RL.SLIDING', 'e', '10'], "ERR wrong number of arguments for 'RL.SLIDING' command"],
    [['RL.SLIDING', 'e', '10', '60', 'PERIOD', '1'], 'ERR syntax error'],
    [['RL.FIXED', 'e', '10', 'DAY', 'TZ', 'Mars/Olympus'], 'ERR TZ must be an IANA time zone name such as America/New_York'],
    [['RL.ALL', 'LIMIT', 'e', 'SLIDING', '1', '1', 'LIMIT', 'e', 'SLIDING', '1', '1'], 'ERR RL.ALL needs a different key for each LIMIT'],
  ];
  for (const RESP of [2, 3]) {
    const r = await client(RESP);
    for (const [args, message] of calls) {
      let error;
      try {
        await r.sendCommand(args);
      } catch (e) {
        error = e;
      }
      eq([error instanceof ErrorReply, error?.message], [true, message], `RESP${RESP} ${args.join(' ')}`);
    }
  }
});

await finish();
