// Compiled by tsc --noEmit in scripts/test-js.sh: the hand-written types describe the module
// as an application uses it.
import { HeraldClient, HeraldError, connect, type HeraldMessage, type StateEvent } from '@herald/client';

const client = new HeraldClient({
  url: 'https://push.example.com',
  topics: ['news', 'orders.42'],
  transport: 'auto',
  getToken: async () => 'jwt',
  storage: globalThis.localStorage,
  backoff: { initial: 500, max: 20000 },
});
const off: () => void = client.on('message', (m: HeraldMessage) => console.log(m.topic, m.id.length, m.payload));
client.on('gap', (g) => g.topics.forEach((t) => console.log(t, g.reason)));
client.on('state', (s: StateEvent) => console.log(s.state, s.transport, s.delay ?? 0, s.reason?.kind));
client.on('error', (e: HeraldError) => console.log(e.code, e.fatal));
off();
client.connect();
const ack: Promise<{ messageId: string }> = client.publish('news', 'update', 'hi', { timeout: 5000 });
void ack;
const cursor: string | null = client.cursor;
void cursor;
void client.close();
void connect({ url: 'http://localhost:4000', topics: ['a'], transport: 'sse', token: 'jwt' });

// @ts-expect-error: an unknown transport
new HeraldClient({ url: 'x', topics: ['a'], transport: 'xhr' });
// @ts-expect-error: messages carry string payloads
client.on('message', (m: { payload: number }) => m);
