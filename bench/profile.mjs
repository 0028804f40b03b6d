// CPU profile of the worker under `wrangler dev`, through workerd's own inspector.
// Usage (Node 22, for its WebSocket): npx node bench/profile.mjs <port> <seconds> [out.cpuprofile]
// <port> is the inspector of the workerd process that runs the worker, not wrangler's
// --inspector-port proxy: the workerd port whose `/json` lists `core:user:neurite`
// (`ss -ltnp | grep workerd`, then `curl 127.0.0.1:<port>/json`).
// Prints the functions with the most self time (Rust functions by name).
const [port = "9229", seconds = "10", out] = process.argv.slice(2);
const list = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = list.find((t) => t.id.startsWith("core:user:")) || list[0];
// workerd's inspector sometimes leaves the first session's first command unanswered:
// connect again (up to three times) until `Profiler.enable` answers.
let ws, call;
for (let attempt = 1; ; attempt++) {
  ws = new WebSocket(target.webSocketDebuggerUrl);
  let id = 0;
  const pending = new Map();
  ws.binaryType = "arraybuffer";
  ws.onmessage = (m) => {
    const text = typeof m.data === "string" ? m.data : Buffer.from(m.data).toString("utf8");
    const msg = JSON.parse(text);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  };
  call = (method, params = {}) =>
    new Promise((resolve) => {
      const n = ++id;
      pending.set(n, resolve);
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = (e) => j(new Error("inspector: " + (e.message || e.type))); });
  const enabled = await Promise.race([call("Profiler.enable"), new Promise((r) => setTimeout(() => r(null), 2000))]);
  if (enabled) break;
  ws.close();
  if (attempt === 3) throw new Error("the inspector does not answer");
}
await call("Profiler.setSamplingInterval", { interval: 200 });
await call("Profiler.start");
await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
const { result } = await call("Profiler.stop");
if (!result) throw new Error("no profile returned");
const profile = result.profile;
if (out) (await import("node:fs")).writeFileSync(out, JSON.stringify(profile));
const counts = new Map();
for (const s of profile.samples) counts.set(s, (counts.get(s) || 0) + 1);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0;
for (const [nid, c] of counts) {
  const n = byId.get(nid);
  const key = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").pop()}`;
  self.set(key, (self.get(key) || 0) + c);
  total += c;
}
const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40);
const ms = (profile.endTime - profile.startTime) / 1000;
console.log(`samples ${total} over ${ms.toFixed(0)} ms`);
for (const [k, c] of top) console.log(`${((100 * c) / total).toFixed(1).padStart(5)}%  ${k}`);
ws.close();
