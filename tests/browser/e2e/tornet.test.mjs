// The package against a private C tor network (tests/tornet): our or-server is the entry over
// WebSocket and caches the network's directory (`[directory]`); the page bootstraps from the
// C tor authorities' consensus through it, so hops 2-3 are C tor 0.4.9 relays; then a 5 MiB
// fetch from a local HTTP server with every byte checked.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { after, before, test } from "node:test";

import { ROOT, demoFileBytes, launchChromium, orServerBinary, sha256 } from "./harness.mjs";

const FIVE_MIB = 5 << 20;
const TORNET = join(ROOT, "tests", "tornet", "tornet.py");
let dir;
let tornet;
let or;
let site;
let browser;
let entry;

const listen = (server) =>
  new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
const freePort = async () => {
  const s = createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "onion-tornet-browser-"));
  execFileSync("python3", [TORNET, "up", "--dir", join(dir, "net")], { stdio: ["ignore", "pipe", "pipe"], timeout: 240_000 });
  tornet = JSON.parse(readFileSync(join(dir, "net", "network.json"), "utf8"));

  // Our OR: WebSocket entry, directory cache of the C tor network, extends to 127.0.0.1.
  const orDir = join(dir, "or");
  const keys = execFileSync(orServerBinary(), ["keygen", "--data-dir", orDir], { encoding: "utf8" });
  const field = (label) => new RegExp(`${label}: (\\S+)`).exec(keys)[1];
  const wsPort = await freePort();
  const auths = tornet.authorities;
  writeFileSync(
    join(dir, "or.toml"),
    `nickname = "webentry"\ndata_dir = "${orDir}"\naddress = "127.0.0.1"\nextend_allow_private = true\n` +
      `[listeners]\nws = "127.0.0.1:${wsPort}"\n` +
      `[directory]\nauthorities = [${auths.map((a) => `"127.0.0.1:${a.dirport}"`).join(", ")}]\n` +
      `v3idents = [${auths.map((a) => `"${a.v3ident}"`).join(", ")}]\nretry_secs = 2\n`,
  );
  or = spawn(orServerBinary(), ["run", "--config", join(dir, "or.toml")], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no consensus cached in 120 s:\n${log}`)), 120_000);
    const onData = (c) => {
      log += c;
      if (log.includes("directory cache: new consensus")) {
        clearTimeout(timer);
        resolve();
      }
    };
    or.stdout.on("data", onData);
    or.stderr.on("data", onData);
    or.on("exit", (code) => reject(new Error(`or-server exited (${code}):\n${log}`)));
  });
  entry = {
    nickname: "webentry",
    ws: `ws://127.0.0.1:${wsPort}/`,
    rsa_id: field("RSA identity fingerprint").replace(/\s/g, ""),
    ed25519_id: field("Ed25519 identity"),
    ntor_key: field("ntor onion key"),
  };

  // The page, the package and the file to fetch, on 127.0.0.1.
  const data = demoFileBytes(FIVE_MIB);
  site = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/5mb.bin") {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": data.length });
      return res.end(data);
    }
    const file = path.startsWith("/pkg/") ? normalize(join(ROOT, path)) : null;
    if (file && file.startsWith(join(ROOT, "pkg")) && existsSync(file)) {
      const type = { ".js": "text/javascript", ".wasm": "application/wasm" }[extname(file)] ?? "application/octet-stream";
      res.writeHead(200, { "content-type": type });
      return res.end(readFileSync(file));
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>tornet</title>");
  });
  site.port = await listen(site);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  if (or && or.exitCode === null) {
    const exited = new Promise((r) => or.once("exit", r));
    or.kill("SIGTERM");
    await exited;
  }
  if (dir) {
    try {
      execFileSync("python3", [TORNET, "down", "--dir", join(dir, "net")], { stdio: "ignore", timeout: 60_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("C tor hops 2-3: bootstrap from the C tor consensus via our entry, fetch 5 MiB, bytes verified", async () => {
  const network = {
    version: 1,
    name: "tornet",
    entries: [entry],
    tor_authorities: tornet.authorities.map((a) => ({
      nickname: a.nickname,
      v3ident: a.v3ident,
      address: `127.0.0.1:${a.dirport}`,
      fingerprint: a.fingerprint,
    })),
  };
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${site.port}/`);
  const r = await page.evaluate(
    async ({ pkg, network, url }) => {
      const { TorClient } = await import(pkg);
      const tor = await TorClient.create({ network, hops: 3 });
      try {
        const res = await tor.fetch(url);
        const body = new Uint8Array(await res.arrayBuffer());
        const digest = await crypto.subtle.digest("SHA-256", body);
        const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
        const circuits = tor.circuits().filter((c) => c.purpose === "exit" && c.built);
        return { status: res.status, length: body.length, hash, circuits };
      } finally {
        tor.close();
      }
    },
    { pkg: `http://127.0.0.1:${site.port}/pkg/index.js`, network, url: `http://127.0.0.1:${site.port}/5mb.bin` },
  );
  assert.equal(r.status, 200);
  assert.equal(r.length, FIVE_MIB);
  assert.equal(r.hash, sha256(demoFileBytes(FIVE_MIB)));
  // Every C tor node of the network relays (authorities too).
  const ctor = new Set([...tornet.relays, ...tornet.authorities].map((x) => x.fingerprint.toUpperCase()));
  assert.ok(r.circuits.some((c) => c.dirty), "the circuit that carried the fetch is listed");
  for (const c of r.circuits) {
    assert.equal(c.path.length, 3);
    assert.equal(c.path[0].rsaId.toUpperCase(), entry.rsa_id.toUpperCase(), "hop 1 is our OR");
    assert.ok(ctor.has(c.path[1].rsaId.toUpperCase()), "hop 2 is a C tor relay");
    assert.ok(ctor.has(c.path[2].rsaId.toUpperCase()), "hop 3 is a C tor relay");
  }
  await page.close();
});
