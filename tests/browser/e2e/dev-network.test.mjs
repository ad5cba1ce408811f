// The package in a real page against `or-server dev`: bootstrap from /network.json, a 3-hop
// circuit, and fetch() of the demo site's 5 MiB file with every byte checked; the same client
// code in a dedicated Worker.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { demoFileSha256, launchChromium, startDevNetwork } from "./harness.mjs";

const FIVE_MIB = 5 << 20;
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

/** Runs in the page or the worker: bootstrap, fetch `url`, hash the body. */
async function fetchThroughTor({ pkg, url }) {
  const { TorClient } = await import(pkg);
  const progress = [];
  const client = await TorClient.create({
    network: new URL("/network.json", pkg).href,
    hops: 3,
    onProgress: (percent, phase) => progress.push(percent),
  });
  try {
    const t0 = performance.now();
    const res = await client.fetch(url);
    const body = new Uint8Array(await res.arrayBuffer());
    const ms = performance.now() - t0;
    const digest = await crypto.subtle.digest("SHA-256", body);
    const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const circuits = client.circuits().filter((c) => c.purpose === "exit" && c.built);
    return { status: res.status, length: body.length, hash, circuits, progress, ms };
  } finally {
    client.close();
  }
}

function checkCircuits(circuits) {
  assert.ok(circuits.length >= 1, "a built exit circuit");
  for (const c of circuits) {
    assert.equal(c.path.length, 3, `circuit ${c.id} has 3 hops`);
    assert.equal(new Set(c.path.map((h) => h.rsaId)).size, 3, "3 distinct relays");
  }
}

test("page: bootstrap, 3-hop circuit, fetch 5 MiB from the demo site, bytes verified", async (t) => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://${net.http}/`);
  const r = await page.evaluate(fetchThroughTor, {
    pkg: `http://${net.http}/pkg/index.js`,
    url: `http://${net.demo}/files/5mb.bin`,
  });
  assert.equal(r.status, 200);
  assert.equal(r.length, FIVE_MIB);
  assert.equal(r.hash, demoFileSha256(FIVE_MIB));
  checkCircuits(r.circuits);
  t.diagnostic(`5 MiB in ${r.ms.toFixed(0)} ms: ${(FIVE_MIB / 1048576 / (r.ms / 1000)).toFixed(2)} MiB/s`);
  assert.ok(r.progress.length > 0, "bootstrap progress reported");
  assert.deepEqual(errors, []);
  await page.close();
});

test("dedicated worker: the same package bootstraps and fetches", async () => {
  const page = await browser.newPage();
  await page.goto(`http://${net.http}/`);
  const r = await page.evaluate(
    async ({ pkg, url, body }) => {
      const src = `const run = ${body};\nonmessage = async (e) => {\n  try { postMessage({ ok: await run(e.data) }); }\n  catch (err) { postMessage({ err: String(err && err.stack || err) }); }\n};`;
      const worker = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })), { type: "module" });
      const reply = await new Promise((resolve) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => resolve({ err: e.message });
        worker.postMessage({ pkg, url });
      });
      worker.terminate();
      return reply;
    },
    {
      pkg: `http://${net.http}/pkg/index.js`,
      url: `http://${net.demo}/files/5mb.bin`,
      body: fetchThroughTor.toString(),
    },
  );
  assert.equal(r.err, undefined, r.err);
  assert.equal(r.ok.status, 200);
  assert.equal(r.ok.length, FIVE_MIB);
  assert.equal(r.ok.hash, demoFileSha256(FIVE_MIB));
  checkCircuits(r.ok.circuits);
  await page.close();
});

test("www/index.html and www/embed-example.html work through the network", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://${net.http}/`);
  await page.waitForFunction(() => document.getElementById("phase").textContent === "ready", null, { timeout: 120_000 });
  await page.fill("#url", `http://${net.demo}/about.html`);
  await page.click("#go");
  await page.waitForFunction(() => /^200 /.test(document.getElementById("result").textContent), null, { timeout: 120_000 });
  assert.match(await page.textContent("#body"), /<\/html>|<p>/i);
  assert.ok((await page.$$("#circuits li")).length >= 1, "circuits listed");

  await page.goto(`http://${net.http}/embed-example.html`);
  await page.waitForFunction(() => /circuit ready|bootstrap 100/.test(document.getElementById("status").textContent), null, { timeout: 120_000 });
  await page.fill("#url", `http://${net.demo}/`);
  await page.click("button");
  await page.waitForFunction(() => /^200 /.test(document.getElementById("out").textContent), null, { timeout: 120_000 });
  assert.deepEqual(errors, []);
  await page.close();
});

test("connect() streams, 404s, aborted fetches and refused destinations", async () => {
  const page = await browser.newPage();
  await page.goto(`http://${net.http}/`);
  const r = await page.evaluate(
    async ({ pkg, demo }) => {
      const { TorClient } = await import(pkg);
      const tor = await TorClient.create({ network: "/network.json" });
      try {
        // A raw stream: HTTP/1.0 by hand, read to the end.
        const [host, port] = demo.split(":");
        const s = await tor.connect(host, Number(port), { isolation: "raw" });
        const w = s.writable.getWriter();
        await w.write(new TextEncoder().encode(`GET /about.html HTTP/1.0\r\nHost: ${demo}\r\n\r\n`));
        let text = "";
        for await (const chunk of s.readable) text += new TextDecoder().decode(chunk);
        const missing = await tor.fetch(`http://${demo}/no-such-page`);
        const ac = new AbortController();
        ac.abort();
        const aborted = await tor.fetch(`http://${demo}/`, { signal: ac.signal }).then(
          () => "resolved",
          (e) => e.name,
        );
        // Nothing listens on port 1: the exit reports the refusal.
        const refused = await tor.connect("127.0.0.1", 1).then(
          () => "connected",
          (e) => String(e.message),
        );
        const isolated = tor.circuits().filter((c) => c.isolation === "raw").length;
        return { head: text.split("\r\n")[0], missing: missing.status, aborted, refused, isolated };
      } finally {
        tor.close();
      }
    },
    { pkg: `http://${net.http}/pkg/index.js`, demo: net.demo },
  );
  assert.match(r.head, /^HTTP\/1\.[01] 200/);
  assert.equal(r.missing, 404);
  assert.equal(r.aborted, "AbortError");
  assert.notEqual(r.refused, "connected");
  assert.ok(r.isolated >= 1, "the isolated stream got a circuit of its own");
  await page.close();
});
