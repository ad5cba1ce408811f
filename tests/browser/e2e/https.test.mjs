// https: through Tor with TLS inside wasm: a local HTTPS server with a test CA (passed in as
// caCerts), reached through the dev network's exit via a recording TCP relay that stands for
// what the exit sees: only TLS records, never the path or the body.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { launchChromium, startDevNetwork } from "./harness.mjs";

let net;
let browser;
let dir;
let https;
let relay;
const seen = [];
const secret = `tls-secret-${randomBytes(8).toString("hex")}`;

/** A test CA and a certificate for 127.0.0.1 signed by it (openssl). */
function makeCerts(d) {
  const ssl = (...args) => execFileSync("openssl", args, { cwd: d, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=onion-wasm test CA", "-keyout", "ca.key", "-out", "ca.pem");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr");
  writeFileSync(join(d, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem");
  const read = (f) => readFileSync(join(d, f), "utf8");
  return { ca: read("ca.pem"), key: read("server.key"), cert: read("server.pem") };
}

const listen = (server) =>
  new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "onion-https-"));
  const certs = makeCerts(dir);
  https = createHttpsServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    res.writeHead(req.url === "/secret" ? 200 : 404, { "content-type": "text/plain" });
    res.end(req.url === "/secret" ? secret : "no");
  });
  const httpsPort = await listen(https);
  // The exit connects here; everything it sends and receives is recorded.
  relay = createServer((sock) => {
    const up = createConnection(httpsPort, "127.0.0.1");
    sock.on("data", (d) => {
      seen.push(Buffer.from(d));
      up.write(d);
    });
    up.on("data", (d) => {
      seen.push(Buffer.from(d));
      sock.write(d);
    });
    sock.on("error", () => up.destroy());
    up.on("error", () => sock.destroy());
    sock.on("close", () => up.end());
    up.on("close", () => sock.end());
  });
  const relayPort = await listen(relay);
  net = await startDevNetwork();
  browser = await launchChromium();
  Object.assign(net, { relayPort, ca: certs.ca });
});

after(async () => {
  await browser?.close();
  await net?.stop();
  relay?.close();
  https?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("https: fetch with TLS inside wasm; the exit sees only TLS records", async () => {
  const page = await browser.newPage();
  await page.goto(`http://${net.http}/`);
  const r = await page.evaluate(
    async ({ pkg, url, ca, bad }) => {
      const { TorClient } = await import(pkg);
      const tor = await TorClient.create({ network: "/network.json", caCerts: [ca] });
      try {
        const res = await tor.fetch(url);
        const text = await res.text();
        // Without the test CA (bundled web PKI roots only) the certificate is refused.
        const refused = await tor.fetch(bad, { caCerts: [] }).then(
          () => "accepted",
          (e) => String(e.message ?? e),
        );
        return { status: res.status, text, refused };
      } finally {
        tor.close();
      }
    },
    {
      pkg: `http://${net.http}/pkg/index.js`,
      url: `https://127.0.0.1:${net.relayPort}/secret`,
      bad: `https://127.0.0.1:${net.relayPort}/secret`,
      ca: net.ca,
    },
  );
  assert.equal(r.status, 200);
  assert.equal(r.text, secret);
  assert.match(r.refused, /TLS|certificate|issuer/i);
  const wire = Buffer.concat(seen);
  assert.ok(wire.length > 0, "the exit carried the connection");
  assert.equal(wire[0], 0x16, "first byte is a TLS handshake record");
  assert.equal(wire.indexOf(secret), -1, "the body is not visible to the exit");
  assert.equal(wire.indexOf("/secret"), -1, "the path is not visible to the exit");
  await page.close();
});
