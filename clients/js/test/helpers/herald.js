// The real Herald binary for black-box tests: started on free ports, killed and started again
// on the same ones, tokens from `herald token`, publishing through the internal API.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';

/** How long any single wait may take before a test fails, in ms. */
export const DEADLINE_MS = 15000;

/** Resolves once `check()` is truthy; fails with `what` after `ms`. Never a fixed sleep. */
export async function until(check, what, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The binary under test: $HERALD_BIN (scripts/test-js.sh sets it). */
export function heraldBin() {
  const bin = process.env.HERALD_BIN;
  if (!bin) throw new Error('HERALD_BIN is not set: run scripts/test-js.sh, or set it to a built herald binary');
  return bin;
}

const ISSUER = 'test_issuer1';
// The development issuer's public-API secret (crates/herald/src/auth/keys.rs, public knowledge).
// Used only for claims `herald token` cannot set: the `publish` grant.
const DEV_PUBLIC_SECRET = '966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc';

export class Herald {
  /** @param {Record<string, string>} env extra settings */
  static async start(env = {}) {
    const herald = new Herald(env);
    await herald.#spawn({ PUBLIC_API_PORT: '0', INTERNAL_API_PORT: '0' });
    return herald;
  }

  constructor(env) {
    this.env = env;
    this.child = null;
    this.log = '';
  }

  get public() {
    return `http://127.0.0.1:${this.publicPort}`;
  }

  get internal() {
    return `http://127.0.0.1:${this.internalPort}`;
  }

  async #spawn(ports) {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      try {
        await this.#spawnOnce(ports);
        return;
      } catch (e) {
        // Right after a kill the port may still be held for a moment.
        if (!/address in use|Address already in use/i.test(String(e.message)) || Date.now() > deadline) throw e;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  async #spawnOnce(ports) {
    const child = spawn(heraldBin(), ['serve'], {
      env: {
        ...process.env,
        PUBLIC_API_HOST: '127.0.0.1',
        INTERNAL_API_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        ...this.env,
        ...ports,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const onData = (chunk) => {
      out += chunk;
      this.log += chunk;
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    let gone = false;
    const exited = once(child, 'exit').then(() => {
      gone = true;
    });
    const publicLine = /public API listening.*?addr=127\.0\.0\.1:(\d+)\s/;
    const internalLine = /internal API listening.*?addr=127\.0\.0\.1:(\d+)\s/;
    try {
      await until(() => gone || (publicLine.test(out) && internalLine.test(out)), 'Herald to log both listening lines');
    } catch (e) {
      child.kill('SIGKILL');
      throw new Error(`${e.message}; its log:\n${out}`);
    }
    if (gone) throw new Error(`herald exited at start:\n${out}`);
    this.publicPort = Number(publicLine.exec(out)[1]);
    this.internalPort = Number(internalLine.exec(out)[1]);
    this.child = child;
    this.exited = exited;
  }

  /** SIGKILL: no closing events, no drain; the history is lost. */
  async kill(signal = 'SIGKILL') {
    if (!this.child) return;
    const { child, exited } = this;
    this.child = null;
    child.kill(signal);
    await exited;
  }

  /** Starts again on the same ports. */
  async startAgain() {
    await this.#spawn({ PUBLIC_API_PORT: String(this.publicPort), INTERNAL_API_PORT: String(this.internalPort) });
  }

  async stop() {
    await this.kill('SIGKILL');
  }

  /** A subscriber token from `herald token`: `grants` become the `topics` claim. */
  token({ grants = [], sub, lifetime } = {}) {
    const args = ['token', '--api', 'public', '--issuer', ISSUER];
    for (const g of grants) args.push('--grant', g);
    if (sub) args.push('--topic', sub);
    if (lifetime) args.push('--expiration', String(lifetime));
    return execFileSync(heraldBin(), args, { encoding: 'utf8' }).trim();
  }

  /** A subscriber token that may also publish (a claim `herald token` has no option for). */
  publishingToken({ grants, publish, lifetime = 120 }) {
    const now = Math.floor(Date.now() / 1000);
    return signHs256(
      { iss: ISSUER, aud: 'public_api', iat: now, exp: now + lifetime, topics: grants, publish },
      DEV_PUBLIC_SECRET,
    );
  }

  #publisher() {
    if (!this.publisherToken || this.publisherTokenExp - Date.now() < 60000) {
      this.publisherToken = execFileSync(heraldBin(), ['token', '--api', 'internal', '--issuer', ISSUER], { encoding: 'utf8' }).trim();
      this.publisherTokenExp = Date.now() + 1500 * 1000;
    }
    return this.publisherToken;
  }

  /** POST /v1/publish; resolves with the answer, throws on anything but 200. */
  async publish(topic, payload, event = 'update') {
    return this.#internal('/v1/publish', { topic, message: { event, payload } });
  }

  async revoke(fields) {
    return this.#internal('/v2/revocations', { iss: ISSUER, ...fields }, 201);
  }

  async #internal(path, body, expected = 200) {
    const response = await fetch(`${this.internal}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#publisher()}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== expected) throw new Error(`${path}: ${response.status} ${text}`);
    return JSON.parse(text);
  }
}

function signHs256(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
