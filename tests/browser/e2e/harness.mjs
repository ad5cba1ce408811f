// Shared pieces of the browser end-to-end tests: start `or-server dev` on 127.0.0.1 (free
// ports), launch Debian's Chromium headless with playwright-core, and the demo file's
// expected bytes (or-server/src/web.rs `demo_file_bytes`).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The or-server binary: $OR_SERVER, else the workspace's debug build. */
export function orServerBinary() {
  const candidates = [
    process.env.OR_SERVER,
    join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "or-server"),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`or-server not built (looked at ${candidates.join(", ")}): cargo build -p or-server`);
  return found;
}

/** Start `or-server dev`; resolves with { http, demo, stop() } once the network is listed. */
export function startDevNetwork({ timeoutMs = 180_000, extraArgs = [] } = {}) {
  const child = spawn(orServerBinary(), ["dev", "--http", "127.0.0.1:0", "--root", ROOT, ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`or-server dev did not start in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (chunk) => {
      out += chunk;
      const http = /network\.json:\s+http:\/\/([^/\s]+)\//.exec(out);
      const demo = /demo site:\s+http:\/\/([^/\s]+)\//.exec(out);
      if (http && demo && /\nopen /.test(out)) {
        clearTimeout(timer);
        // With `--ws-op-socks`: the entry OR's WS_OP_SOCKS listener.
        const wsOpSocks = /ws_op_socks:\s+(\S+)/.exec(out)?.[1];
        resolve({ http: http[1], demo: demo[1], wsOpSocks, stop, log: () => out });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (c) => (out += c));
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`or-server dev exited (${code ?? signal}):\n${out}`));
    });
  });
}

/** Headless Debian Chromium. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
}

/** The demo file's first `len` bytes: a xorshift64 stream, little endian. */
export function demoFileBytes(len) {
  const buf = Buffer.alloc(len);
  let x = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  const word = Buffer.alloc(8);
  for (let i = 0; i < len; i += 8) {
    x ^= (x << 13n) & mask;
    x ^= x >> 7n;
    x ^= (x << 17n) & mask;
    word.writeBigUInt64LE(x);
    word.copy(buf, i, 0, Math.min(8, len - i));
  }
  return buf;
}

/** SHA-256 (hex) of `bytes`. */
export function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/** SHA-256 (hex) of the demo file's first `len` bytes. */
export function demoFileSha256(len) {
  return sha256(demoFileBytes(len));
}
