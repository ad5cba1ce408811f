// The seed's iAnonym mode in a real page: the page associates a fake domain with a one-hop
// circuit to the dev network's entry OR (client.associate), then curl, configured with the
// entry's WS_OP_SOCKS port as its SOCKS proxy, fetches the demo site's file "from" the fake
// domain: the OR relays the request to the page as RELAY_WS, the page's engine fetches it
// through its own 3-hop circuit and answers. Every byte is checked.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { demoFileSha256, launchChromium, sha256, startDevNetwork } from "./harness.mjs";

const run = promisify(execFile);
const LEN = 5 << 20;
const DOMAIN = "page-e2e.fake.test";
let net;
let browser;
let dir;

before(async () => {
  net = await startDevNetwork({ extraArgs: ["--ws-op-socks", "127.0.0.1:0"] });
  assert.ok(net.wsOpSocks, `no ws_op_socks line:\n${net.log()}`);
  browser = await launchChromium();
  dir = mkdtempSync(join(tmpdir(), "associate-e2e-"));
});

after(async () => {
  await browser?.close();
  await net?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** curl through WS_OP_SOCKS; `{ code, body }` (code: curl's exit status). */
async function curl(url, out) {
  try {
    await run("curl", ["-sS", "--max-time", "60", "--socks5-hostname", net.wsOpSocks, "-o", out, url]);
    return { code: 0, body: readFileSync(out) };
  } catch (e) {
    return { code: e.code ?? -1, body: null, err: String(e.stderr ?? e) };
  }
}

test("page associates a fake domain; curl via the OR's WS_OP_SOCKS gets the demo file through the page", async (t) => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://${net.http}/`);

  // Before the page associates: the OR refuses the name (curl: SOCKS error).
  const before = await curl(`http://${DOMAIN}/files/5mb.bin`, join(dir, "none"));
  assert.notEqual(before.code, 0, "no association yet");

  const assoc = await page.evaluate(
    async ({ pkg, domain, origin }) => {
      const { TorClient } = await import(pkg);
      window.__events = [];
      const client = await TorClient.create({
        network: new URL("/network.json", pkg).href,
        hops: 3,
        onEvent: (ev) => window.__events.push(ev),
      });
      window.__client = client;
      const ev = await client.associate(domain, { origin });
      const cid = client.circuits().find((c) => c.id === ev.circuit);
      return { ev, cid, domain: client.associatedDomain() };
    },
    { pkg: `http://${net.http}/pkg/index.js`, domain: DOMAIN, origin: net.demo },
  );
  assert.equal(assoc.ev.type, "associated");
  assert.equal(assoc.ev.fakeDomain, DOMAIN);
  assert.equal(assoc.domain, DOMAIN);
  assert.equal(assoc.cid.purpose, "seed");
  assert.equal(assoc.cid.path.length, 1, "CID is one hop");

  // The OR handles RELAY_ASSOCIATE right after it arrives: retry briefly until it knows it.
  const out = join(dir, "body");
  let got;
  const t0 = Date.now();
  for (let i = 0; i < 100; i++) {
    got = await curl(`http://${DOMAIN}/files/5mb.bin`, out);
    if (got.code === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(got.code, 0, `curl failed: ${got.err}`);
  t.diagnostic(`demo file through the page in ${Date.now() - t0} ms`);
  // The whole demo file (5 MiB), every byte checked.
  assert.equal(sha256(got.body), demoFileSha256(got.body.length));
  assert.ok(got.body.length >= LEN, `only ${got.body.length} bytes`);

  // The page served it through its own 3-hop circuits and reported the request.
  const after = await page.evaluate(() => ({
    events: window.__events.filter((e) => e.type === "seedRequestDone"),
    circuits: window.__client.circuits(),
  }));
  const served = after.circuits.filter((c) => c.isolation === `associate:${DOMAIN}`);
  assert.ok(served.length >= 1, "an exit circuit for the association");
  for (const c of served) assert.equal(c.path.length, 3);
  assert.ok(
    after.events.some((e) => e.bytesOut > got.body.length && e.target === net.demo),
    JSON.stringify(after.events),
  );

  // Dissociate: the OR forgets the name.
  await page.evaluate(() => window.__client.dissociate());
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    gone = (await curl(`http://${DOMAIN}/`, join(dir, "gone"))).code !== 0;
    if (!gone) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(gone, "still associated after dissociate()");
  await page.evaluate(() => window.__client.close());
  assert.deepEqual(errors, []);
  await page.close();
});
