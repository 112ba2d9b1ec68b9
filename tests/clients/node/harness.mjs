// Helpers for the tests of docs/CLIENTS.md's Node.js snippets.
//
// scripts/test_clients.py writes each snippet (ratelimit.mjs, partner.mjs,
// ...) beside these files, pointed at its servers, and runs each test_*.mjs
// here. A test prints `ok - name` or `not ok - name` and the error, values
// included, for each check, and exits 1 if any failed.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { isDeepStrictEqual, inspect } from 'node:util';
import { createClient } from 'redis';

export const URL = process.env.RL_REDIS_URL;
export const CLUSTER_URL = process.env.RL_CLUSTER_URL;
export const CLUSTER_NODES = process.env.RL_CLUSTER_NODES.split(',');
export const HTTP_PORT = Number(process.env.RL_HTTP_PORT);
export const NODE_REDIS = process.env.RL_NODE_REDIS;

let failed = 0;
const opened = [];

export async function check(name, fn) {
  const t = performance.now();
  try {
    await fn();
    console.log(`ok - ${name} (${((performance.now() - t) / 1000).toFixed(2)} s)`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}`);
    console.log(e instanceof Error ? e.stack : inspect(e));
  }
}

export async function finish() {
  for (const c of opened) await c.close().catch(() => {});
  process.exit(failed ? 1 : 0);
}

export function eq(got, want, what) {
  if (!isDeepStrictEqual(got, want)) {
    throw new Error(`${what}:\n  got  ${inspect(got, { depth: 5 })}\n  want ${inspect(want, { depth: 5 })}`);
  }
}

export function within(got, lo, hi, what) {
  if (!(got >= lo && got <= hi)) throw new Error(`${what}: got ${inspect(got)}, want between ${lo} and ${hi}`);
}

// A connected client, closed by finish(); RESP undefined: node-redis's default.
export async function client(RESP, url = URL) {
  const c = await createClient(RESP ? { url, RESP } : { url }).connect();
  opened.push(c);
  return c;
}

// The protocol the connection really speaks, from the server's side.
export async function respOf(c) {
  const info = String(await c.sendCommand(['CLIENT', 'INFO']));
  return Number(/\bresp=(\d)/.exec(info)[1]);
}

// Runs a snippet as `node file`; returns its stdout, throws with everything if it fails.
export function runScript(file, timeout = 60000) {
  const p = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout });
  if (p.status !== 0) {
    throw new Error(`${file} exited ${p.status} ${p.signal ?? ''}\nstdout:\n${p.stdout}\nstderr:\n${p.stderr}`);
  }
  return p.stdout;
}

// Runs a server snippet while fn runs; waits until it accepts connections.
export async function serving(file, fn, port = HTTP_PORT) {
  const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  p.stdout.on('data', (d) => { output += d; });
  p.stderr.on('data', (d) => { output += d; });
  try {
    const deadline = Date.now() + 15000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`${file} exited ${p.exitCode}:\n${output}`);
      const up = await new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > deadline) throw new Error(`${file} never listened on 127.0.0.1:${port}:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return await fn();
  } finally {
    p.kill();
  }
}

// What a snippet says it prints: the `// comment` ending each console.log(...) statement.
export function printed(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const want = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trimStart().startsWith('console.log(')) continue;
    let depth = 0;
    let j = i;
    for (;;) {
      depth += parens(lines[j]);
      if (depth <= 0) break;
      j += 1;
    }
    const m = /\);?\s+\/\/ (.*)$/.exec(lines[j]);
    if (m) want.push(m[1]);
    i = j;
  }
  return want;
}

// Opening minus closing parentheses outside quotes and comments.
function parens(line) {
  let depth = 0;
  let quote = null;
  for (let k = 0; k < line.length; k++) {
    const c = line[k];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"' || c === '`') {
      quote = c;
    } else if (c === '/' && line[k + 1] === '/') {
      break;
    } else if (c === '(') {
      depth += 1;
    } else if (c === ')') {
      depth -= 1;
    }
  }
  return depth;
}

export async function serverMs(c) {
  const [sec, usec] = await c.sendCommand(['TIME']);
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
}

// Local wall clock minus UTC, in ms, at the instant ms.
function offsetMs(ms, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
    hour: 'numeric', minute: 'numeric', second: 'numeric',
  }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

// Unix ms of the first local midnight after nowMs (DST included).
export function nextMidnightMs(nowMs, zone = 'America/New_York') {
  const local = new Date(nowMs + offsetMs(nowMs, zone));
  const wallMidnight = Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate() + 1);
  const guess = wallMidnight - offsetMs(nowMs, zone);
  return wallMidnight - offsetMs(guess, zone);
}

// Two replies of the same calls made moments apart: every field a number,
// equal, the two time fields (3 and 4) within slackMs of each other.
export function sameReply(a, b, what, slackMs = 100) {
  for (const reply of [a, b]) {
    if (!Array.isArray(reply) || !reply.every((x) => typeof x === 'number' && Number.isInteger(x))) {
      throw new Error(`${what}: not an array of integer numbers: ${inspect(reply)}`);
    }
  }
  eq(a.length, b.length, `${what}: length`);
  a.forEach((x, i) => {
    if ((i === 3 || i === 4) && x > 0 && b[i] > 0) {
      within(Math.abs(x - b[i]), 0, slackMs, `${what}: field ${i + 1} of ${inspect(a)} and ${inspect(b)}`);
    } else {
      eq(x, b[i], `${what}: field ${i + 1} of ${inspect(a)} and ${inspect(b)}`);
    }
  });
}
