// A page as an application would write it: the client from /src (the package's own files),
// a token from the page's backend, the cursor in localStorage. It records what the client
// reports in window.herald for the test to read.
import { HeraldClient } from '/src/index.js';

const params = new URLSearchParams(location.search);
const topics = params.getAll('topic');
const record = { messages: [], states: [], gaps: [], errors: [], tokens: 0 };
window.herald = record;

const client = new HeraldClient({
  url: params.get('herald'),
  topics,
  transport: params.get('transport'),
  storage: localStorage,
  backoff: { initial: 100, max: 1000 },
  getToken: async () => {
    record.tokens += 1;
    const response = await fetch(`/token?${topics.map((t) => `topic=${encodeURIComponent(t)}`).join('&')}`);
    if (!response.ok) throw new Error(`token: ${response.status}`);
    return response.text();
  },
});
client.on('message', (m) => {
  record.messages.push(m);
  const li = document.createElement('li');
  li.textContent = `${m.topic} ${m.id} ${m.event}: ${m.payload}`;
  document.getElementById('messages').append(li);
});
client.on('state', (s) => {
  record.states.push({ state: s.state, transport: s.transport, reason: s.reason?.kind ?? null });
  document.getElementById('state').textContent = s.state;
  document.getElementById('transport').textContent = s.transport ?? '-';
});
client.on('gap', (g) => record.gaps.push(g));
client.on('error', (e) => record.errors.push({ code: e.code, message: e.message }));
window.heraldClient = client.connect();
