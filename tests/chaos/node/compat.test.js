// The published Toxiproxy node client (toxiproxy-node-client, unchanged from npm) driving
// tether chaos through its whole API, with real traffic through the proxies it makes.
// TOXIPROXY_URL says where tether chaos listens (run_node_compat.sh starts it).
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const net = require("node:net");
const { Toxiproxy } = require("toxiproxy-node-client");

const url = process.env.TOXIPROXY_URL;
let echo;
let upstream;

// An echo server as the upstream of every proxy.
before(async () => {
  echo = net.createServer((socket) => socket.pipe(socket));
  await new Promise((resolve) => echo.listen(0, "127.0.0.1", resolve));
  upstream = `127.0.0.1:${echo.address().port}`;
});
after(() => echo.close());

function portOf(listen) {
  return Number(listen.slice(listen.lastIndexOf(":") + 1));
}

// One echo round trip through a proxy: resolves to its duration in ms.
function roundTrip(port, payload = "ping") {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect(port, "127.0.0.1", () => socket.write(payload));
    let got = "";
    socket.setTimeout(5000, () => reject(new Error("round trip timed out")));
    socket.on("data", (d) => {
      got += d;
      if (got.length >= payload.length) {
        socket.destroy();
        assert.equal(got, payload);
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      }
    });
    socket.on("error", reject);
  });
}

function connectError(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolve(null);
    });
    socket.on("error", (e) => resolve(e.code));
  });
}

test("the node client drives every route", async () => {
  const toxiproxy = new Toxiproxy(url);
  await toxiproxy.reset();

  const version = await toxiproxy.getVersion();
  assert.match(version, /"version"/);

  const proxy = await toxiproxy.createProxy({ name: "redis", listen: "127.0.0.1:0", upstream });
  assert.equal(proxy.name, "redis");
  assert.equal(proxy.upstream, upstream);
  assert.equal(proxy.enabled, true);
  const port = portOf(proxy.listen);
  assert.ok(port > 0);
  await roundTrip(port);

  await assert.rejects(
    toxiproxy.createProxy({ name: "redis", listen: "127.0.0.1:0", upstream }),
    /Request failed with status code 409/);

  const all = await toxiproxy.getAll();
  assert.deepEqual(Object.keys(all), ["redis"]);
  assert.equal((await toxiproxy.get("redis")).listen, proxy.listen);

  // A toxic with the defaults: latency on the downstream, toxicity 1.
  const toxic = await proxy.addToxic({ type: "latency", attributes: { latency: 100 } });
  assert.equal(toxic.name, "latency_downstream");
  assert.equal(toxic.type, "latency");
  assert.equal(toxic.stream, "downstream");
  assert.equal(toxic.toxicity, 1);
  assert.deepEqual(toxic.attributes, { latency: 100, jitter: 0 });
  assert.ok((await roundTrip(port)) >= 100);

  await assert.rejects(proxy.addToxic({ type: "latency", attributes: { latency: 1 } }),
                       /Request failed with status code 409/);
  const fetched = await proxy.getToxic("latency_downstream");
  assert.equal(fetched.attributes.latency, 100);

  const updated = await fetched.update({ attributes: { latency: 12345, jitter: 42 } });
  assert.deepEqual(updated.attributes, { latency: 12345, jitter: 42 });
  await updated.remove();
  assert.ok((await roundTrip(port)) < 100);
  await assert.rejects(proxy.getToxic("latency_downstream"), /Request failed with status code 404/);

  const upstreamToxic = await proxy.addToxic({
    name: "slow_up", type: "bandwidth", stream: "upstream", toxicity: 0.5,
    attributes: { rate: 100 } });
  assert.equal(upstreamToxic.stream, "upstream");
  assert.equal(upstreamToxic.toxicity, 0.5);

  // Disabling closes the listener; re-enabling on the address it reported opens it again.
  const disabled = await proxy.update({ enabled: false, listen: proxy.listen, upstream });
  assert.equal(disabled.enabled, false);
  assert.equal(await connectError(port), "ECONNREFUSED");
  const enabled = await proxy.update({ enabled: true, listen: proxy.listen, upstream });
  assert.equal(enabled.enabled, true);
  assert.equal(enabled.listen, proxy.listen);
  await roundTrip(port);

  // populate: creates what is new, keeps what is unchanged.
  const populated = await toxiproxy.populate([
    { name: "redis", listen: proxy.listen, upstream },
    { name: "pg", listen: "127.0.0.1:0", upstream },
  ]);
  assert.deepEqual(Object.keys(populated).sort(), ["pg", "redis"]);
  assert.equal(populated.redis.listen, proxy.listen);
  await roundTrip(portOf(populated.pg.listen));

  // reset: every proxy enabled, every toxic gone.
  await proxy.update({ enabled: false, listen: proxy.listen, upstream });
  await toxiproxy.reset();
  assert.equal((await toxiproxy.get("redis")).enabled, true);
  await roundTrip(port);

  await proxy.remove();
  await assert.rejects(toxiproxy.get("redis"), /Request failed with status code 404/);
  await populated.pg.remove();
  assert.deepEqual(Object.keys(await toxiproxy.getAll()), []);
});
