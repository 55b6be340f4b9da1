// The client in headless Chromium (Debian's chromium, driven by playwright-core), over each
// transport, from a page on another origin than Herald's: receives on two topics, survives a
// server restart, and resumes from the cursor in localStorage when the page is opened again.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Herald, DEADLINE_MS } from '../helpers/herald.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.resolve(here, '../../src');

// Chromium keeps trying hosts this network refuses unless told not to (spec §9).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let browser;
let site;
let herald;

before(async () => {
  const executablePath = process.env.CHROMIUM_BIN ?? execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  site = await serveSite((topics) => herald.token({ grants: topics }));
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (site ? site.server.close(resolve) : resolve()));
  await herald?.stop();
});

/** The application's own origin: the page, the package's files, and a token endpoint. */
async function serveSite(mint) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      if (url.pathname === '/token') {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
        res.end(mint(url.searchParams.getAll('topic')));
        return;
      }
      const file =
        url.pathname === '/' ? path.join(here, 'page.html')
          : url.pathname === '/page.js' ? path.join(here, 'page.js')
            : url.pathname.startsWith('/src/') ? path.join(src, path.normalize(url.pathname.slice(5)))
              : null;
      if (!file || !file.startsWith(here) && !file.startsWith(src)) throw Object.assign(new Error('not found'), { code: 'ENOENT' });
      const body = await readFile(file);
      const type = file.endsWith('.html') ? 'text/html' : 'text/javascript';
      res.writeHead(200, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-store' });
      res.end(body);
    } catch (e) {
      res.writeHead(e.code === 'ENOENT' ? 404 : 500).end(String(e.message));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

const read = (page) => page.evaluate(() => window.herald);
const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: DEADLINE_MS, polling: 20 });

function assertExactly(messages, expected) {
  for (const [topic, list] of Object.entries(expected)) {
    assert.deepEqual(messages.filter((m) => m.topic === topic).map((m) => m.payload), list, topic);
  }
  const ids = messages.map((m) => `${m.topic}/${m.id}`);
  assert.equal(new Set(ids).size, ids.length, 'no message twice');
}

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`${transport} in Chromium: receives, survives a server restart, resumes after a reload`, async (t) => {
    herald = await Herald.start();
    const context = await browser.newContext();
    const url = `${site.origin}/?transport=${transport}&herald=${encodeURIComponent(herald.public)}&topic=a&topic=b`;
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url);
    await waitFor(page, () => window.herald?.states.some((s) => s.state === 'open'));
    await herald.publish('a', 'a1');
    await herald.publish('b', 'b1');
    await waitFor(page, () => window.herald.messages.length === 2);

    await herald.kill();
    await waitFor(page, () => window.herald.states.at(-1).state !== 'open');
    await herald.startAgain();
    await herald.publish('a', 'a2');
    await herald.publish('b', 'b2');
    await waitFor(page, () => window.herald.messages.length === 4);
    const first = await read(page);
    assertExactly(first.messages, { a: ['a1', 'a2'], b: ['b1', 'b2'] });
    assert.ok(first.states.every((s) => s.transport === transport), 'no transport switch');
    // The restarted node lost its history and says so, once per topic.
    assert.deepEqual(first.gaps.flatMap((g) => g.topics).sort(), ['a', 'b']);
    t.diagnostic(`${transport}: states ${first.states.map((s) => s.state + (s.reason ? `(${s.reason})` : '')).join(' → ')}`);

    // The page goes away; messages are published meanwhile; the page is opened again and
    // resumes from the cursor it left in localStorage.
    await page.close();
    await herald.publish('a', 'a3');
    await herald.publish('b', 'b3');
    const again = await context.newPage();
    again.on('pageerror', (e) => pageErrors.push(e.message));
    await again.goto(url);
    await waitFor(again, () => window.herald?.messages.length === 2);
    await herald.publish('a', 'a4');
    await waitFor(again, () => window.herald.messages.length === 3);
    const second = await read(again);
    assertExactly(second.messages, { a: ['a3', 'a4'], b: ['b3'] });
    assert.deepEqual(second.gaps, []);
    assert.deepEqual([...first.errors, ...second.errors], []);
    assert.deepEqual(pageErrors, []);
    await again.evaluate(() => window.heraldClient.close());
    await context.close();
    await herald.stop();
    herald = null;
  });
}
