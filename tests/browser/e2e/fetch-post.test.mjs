// fetch() request bodies and keep-alive in a real page against `or-server dev`: a 1 MiB POST
// to the demo site's echo (POST /echo sends the body back with its SHA-256 computed by the
// server), bodies of every kind (string, ArrayBuffer, typed array, Blob, URLSearchParams,
// ReadableStream sent chunked), and two sequential GETs carried by one kept-alive connection
// (the demo site numbers its connections in `x-connection`; the client counts its streams).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { launchChromium, startDevNetwork } from "./harness.mjs";

const ONE_MIB = 1 << 20;
let net;
let browser;

before(async () => {
  net = await startDevNetwork();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await net?.stop();
});

/** Runs in the page. */
async function postBodies({ pkg, demo, size }) {
  const { TorClient } = await import(pkg);
  const hex = async (bytes) =>
    [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const tor = await TorClient.create({ network: "/network.json", hops: 3 });
  try {
    const out = {};
    // 1 MiB of random bytes as a Uint8Array.
    const big = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    const t0 = performance.now();
    const res = await tor.fetch(`http://${demo}/echo`, { method: "POST", body: big });
    const back = new Uint8Array(await res.arrayBuffer());
    out.big = {
      status: res.status,
      length: back.length,
      same: back.length === big.length && back.every((b, i) => b === big[i]),
      sent: await hex(big),
      serverSha: res.headers.get("x-body-sha256"),
      echoedSha: await hex(back),
      ms: performance.now() - t0,
    };
    // Every other kind of body: [what was sent as bytes, the echo's answer].
    const text = "héllo, onion ✓\n".repeat(1000);
    const kinds = {
      string: [new TextEncoder().encode(text), { method: "POST", body: text }],
      arrayBuffer: [big.slice(0, 70000), { method: "PUT", body: big.slice(0, 70000).buffer }],
      dataView: [big.slice(5, 1005), { method: "POST", body: new DataView(big.buffer, 5, 1000) }],
      blob: [big.slice(0, 200000), { method: "POST", body: new Blob([big.slice(0, 100000), big.slice(100000, 200000)], { type: "application/x-test" }) }],
      form: [new TextEncoder().encode("a=1&b=x+y"), { method: "POST", body: new URLSearchParams({ a: "1", b: "x y" }) }],
      empty: [new Uint8Array(0), { method: "POST" }],
    };
    // A ReadableStream body of 300 000 bytes in uneven pieces: sent chunked.
    const streamed = big.slice(0, 300000);
    let at = 0;
    kinds.stream = [
      streamed,
      {
        method: "POST",
        body: new ReadableStream({
          pull(ctrl) {
            if (at >= streamed.length) return ctrl.close();
            const n = Math.min(streamed.length - at, 1 + ((at * 7919) % 40000));
            ctrl.enqueue(streamed.slice(at, at + n));
            at += n;
          },
        }),
      },
    ];
    out.kinds = {};
    for (const [name, [expected, init]] of Object.entries(kinds)) {
      const r = await tor.fetch(`http://${demo}/echo`, init);
      const got = new Uint8Array(await r.arrayBuffer());
      out.kinds[name] = {
        status: r.status,
        method: r.headers.get("x-method"),
        type: r.headers.get("content-type"),
        same: got.length === expected.length && got.every((b, i) => b === expected[i]),
        shaOk: r.headers.get("x-body-sha256") === (await hex(expected)),
      };
    }
    out.getWithBody = await tor.fetch(`http://${demo}/echo`, { body: "x" }).then(
      () => "resolved",
      (e) => e.name,
    );
    // Keep-alive: two sequential GETs with an isolation key of their own.
    const before = tor.fetchStats();
    const a = await tor.fetch(`http://${demo}/about.html`, { isolation: "keepalive" });
    const aText = await a.text();
    const afterOne = tor.fetchStats();
    const b = await tor.fetch(`http://${demo}/`, { isolation: "keepalive" });
    const bText = await b.text();
    const afterTwo = tor.fetchStats();
    out.keepAlive = {
      status: [a.status, b.status],
      texts: [aText.includes("<h1>About</h1>"), bText.includes("demo site")],
      connection: [a.headers.get("x-connection"), b.headers.get("x-connection")],
      opened: [afterOne.connectionsOpened - before.connectionsOpened, afterTwo.connectionsOpened - afterOne.connectionsOpened],
      reused: afterTwo.connectionsReused - afterOne.connectionsReused,
      idle: afterTwo.idle,
    };
    // After newIdentity() nothing kept is reused: a new connection.
    tor.newIdentity();
    const c = await tor.fetch(`http://${demo}/`, { isolation: "keepalive" });
    await c.arrayBuffer();
    out.afterNewIdentity = {
      connection: c.headers.get("x-connection"),
      opened: tor.fetchStats().connectionsOpened - afterTwo.connectionsOpened,
    };
    return out;
  } finally {
    tor.close();
  }
}

test("fetch(): 1 MiB POST echoed, bodies of every kind, keep-alive reuses one stream", async (t) => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://${net.http}/`);
  const r = await page.evaluate(postBodies, { pkg: `http://${net.http}/pkg/index.js`, demo: net.demo, size: ONE_MIB });

  assert.equal(r.big.status, 200);
  assert.equal(r.big.length, ONE_MIB);
  assert.ok(r.big.same, "the echo is the bytes sent");
  assert.equal(r.big.serverSha, r.big.sent, "the server hashed the bytes sent");
  assert.equal(r.big.echoedSha, r.big.sent);
  t.diagnostic(`1 MiB up and back in ${r.big.ms.toFixed(0)} ms`);

  for (const [name, k] of Object.entries(r.kinds)) {
    assert.equal(k.status, 200, name);
    assert.ok(k.same, `${name}: the echo is the bytes sent`);
    assert.ok(k.shaOk, `${name}: the server's SHA-256`);
  }
  assert.equal(r.kinds.arrayBuffer.method, "PUT");
  assert.equal(r.kinds.string.method, "POST");
  assert.match(r.kinds.string.type, /^text\/plain/);
  assert.equal(r.kinds.blob.type, "application/x-test");
  assert.match(r.kinds.form.type, /^application\/x-www-form-urlencoded/);
  assert.equal(r.getWithBody, "TypeError");

  const ka = r.keepAlive;
  assert.deepEqual(ka.status, [200, 200]);
  assert.deepEqual(ka.texts, [true, true]);
  assert.ok(ka.connection[0], "the demo site numbers its connections");
  assert.equal(ka.connection[0], ka.connection[1], "both GETs on one connection at the server");
  assert.deepEqual(ka.opened, [1, 0], "one Tor stream opened for the two requests");
  assert.equal(ka.reused, 1);
  assert.ok(ka.idle >= 1, "the connection is kept idle after the body");
  assert.equal(r.afterNewIdentity.opened, 1, "after newIdentity() a new stream");
  assert.notEqual(r.afterNewIdentity.connection, ka.connection[0]);
  assert.deepEqual(errors, []);
  await page.close();
});
