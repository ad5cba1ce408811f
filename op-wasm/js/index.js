// The public API of the onion-wasm package: `TorClient` on top of the wasm module's low-level
// `Client` (op-wasm/src/client.rs). Streams become WHATWG streams; `fetch` builds requests and
// parses responses with the core's HTTP/1.1 code (op-wasm/src/http.rs) and returns a standard
// `Response`. Works in a Window and in a dedicated Worker (no window-only API).
import init, { Client, HttpResponseParser, TlsClient, buildRequest } from "./op_wasm.js";

let initialized;

/** Load the wasm module once (`wasmUrl` overrides where op_wasm_bg.wasm is fetched from). */
function ensureInit(wasmUrl) {
  initialized ??= init(wasmUrl ? { module_or_path: wasmUrl } : undefined);
  return initialized;
}

/** The network description's JSON text from an object, JSON text, or a URL to fetch. */
async function loadNetwork(network) {
  if (network instanceof URL || (typeof network === "string" && !network.trim().startsWith("{"))) {
    const res = await fetch(new URL(String(network), globalThis.location?.href));
    if (!res.ok) throw new Error(`network description ${network}: HTTP ${res.status}`);
    return await res.text();
  }
  if (typeof network === "string") return network;
  if (network && typeof network === "object") return JSON.stringify(network);
  throw new TypeError("options.network: a network description (object, JSON text or URL)");
}

/** `{ readable, writable, close }` over stream `id` of client `c`. */
function streamPair(c, id) {
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      c.closeStream(id);
    }
  };
  // highWaterMark 0: bytes are taken from the engine only when the reader asks, so a slow
  // reader holds the exit to one stream window (SENDMEs follow the reads).
  const readable = new ReadableStream(
    {
      async pull(ctrl) {
        try {
          const chunk = await c.read(id);
          if (chunk === undefined) {
            ctrl.close();
            close();
          } else {
            ctrl.enqueue(chunk);
          }
        } catch (e) {
          ctrl.error(e);
          close();
        }
      },
      cancel() {
        close();
      },
    },
    { highWaterMark: 0 },
  );
  const writable = new WritableStream(
    {
      async write(chunk) {
        const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
        await c.write(id, bytes);
      },
      // Tor streams have no half-close: the stream ends with close() or when the exit ends it.
      close() {},
      abort() {
        close();
      },
    },
    { highWaterMark: 1 },
  );
  return { readable, writable, close };
}

/** DER bytes of certificates given as PEM text (one or more) or DER bytes. */
function derCertificates(certs) {
  const out = [];
  for (const c of certs ?? []) {
    if (typeof c === "string") {
      for (const m of c.matchAll(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g)) {
        out.push(Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (ch) => ch.charCodeAt(0)));
      }
    } else {
      out.push(c instanceof Uint8Array ? c : new Uint8Array(c));
    }
  }
  return out;
}

/**
 * TLS (rustls in wasm) over a Tor stream pair: resolves after the handshake with a pair of the
 * same shape carrying plaintext. The exit relays only TLS records.
 */
async function tlsPair(pair, serverName, roots) {
  const tls = new TlsClient(serverName, roots);
  const reader = pair.readable.getReader();
  const writer = pair.writable.getWriter();
  const pending = [];
  let freed = false;
  const close = () => {
    if (!freed) {
      freed = true;
      tls.free();
      pair.close();
    }
  };
  const flush = async () => {
    const out = tls.takeOutgoing();
    if (out.length > 0) await writer.write(out);
  };
  try {
    await flush();
    while (tls.isHandshaking()) {
      const { value, done } = await reader.read();
      if (done) throw new TypeError("TLS: the stream closed during the handshake");
      const plain = tls.receive(value);
      if (plain.length > 0) pending.push(plain);
      await flush();
    }
  } catch (e) {
    close();
    throw e;
  }
  const readable = new ReadableStream(
    {
      async pull(ctrl) {
        try {
          while (pending.length === 0) {
            const { value, done } = await reader.read();
            if (done) {
              ctrl.close();
              close();
              return;
            }
            const plain = tls.receive(value);
            await flush();
            if (plain.length > 0) pending.push(plain);
          }
          ctrl.enqueue(pending.shift());
        } catch (e) {
          ctrl.error(e);
          close();
        }
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
  const writable = new WritableStream({
    async write(chunk) {
      tls.send(chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk));
      await flush();
    },
    close() {},
    abort: close,
  });
  return { readable, writable, close };
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const REDIRECT = new Set([301, 302, 303, 307, 308]);

export class TorClient {
  #c;
  #roots;

  constructor(client, roots) {
    this.#c = client;
    this.#roots = roots;
  }

  /**
   * Start a client and wait until the directory is verified.
   * Options: network (object, JSON text or URL), hops (3), circuits (2), circuitLifetime (ms),
   * circuitKeepalive (ms), oneCircuit (true), createFastWs (false), hopTimeout, connectTimeout,
   * streamTimeout (ms), onProgress(percent, phase), onCircuit(circuit), onEvent(event), wasmUrl,
   * caCerts (PEM text or DER bytes trusted for https: instead of the bundled web PKI roots).
   */
  static async create(options = {}) {
    await ensureInit(options.wasmUrl);
    const text = await loadNetwork(options.network);
    const { onProgress, onCircuit, onEvent } = options;
    const c = new Client(text, options, (ev) => {
      try {
        if (ev.type === "bootstrap") onProgress?.(ev.percent, ev.phase);
        if (ev.type === "circuitBuilt") onCircuit?.(ev.circuit);
        onEvent?.(ev);
      } catch (e) {
        console.error("TorClient callback failed", e);
      }
    });
    try {
      await c.ready();
    } catch (e) {
      c.close();
      c.free();
      throw e;
    }
    return new TorClient(c, derCertificates(options.caCerts));
  }

  /** A stream to host:port through Tor: `{ readable, writable, close() }`. */
  async connect(host, port, { isolation } = {}) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`bad port ${port}`);
    const c = this.#c;
    const id = c.connect(String(host), port, isolation ?? undefined);
    try {
      await c.connected(id);
    } catch (e) {
      c.closeStream(id);
      throw e;
    }
    return streamPair(c, id);
  }

  /** Resolve a host name at an exit: an array of addresses. */
  resolve(host, { isolation } = {}) {
    return this.#c.resolve(host, isolation ?? undefined);
  }

  /**
   * fetch() through Tor. https: runs TLS inside wasm (the exit sees only ciphertext); http: is
   * visible to the exit. GET only; redirects per init.redirect; gzip/deflate bodies decoded with DecompressionStream.
   * init.isolation puts the request on circuits of its own; init.signal aborts it.
   */
  async fetch(input, init = {}) {
    let url = new URL(input instanceof Request ? input.url : String(input), globalThis.location?.href);
    const method = (init.method ?? "GET").toUpperCase();
    const redirect = init.redirect ?? "follow";
    for (let hops = 0; ; hops++) {
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(`${url.protocol} URLs are not supported`);
      }
      const res = await this.#fetchOnce(url, method, init);
      const location = res.headers.get("location");
      if (REDIRECT.has(res.status) && location && redirect !== "manual") {
        await res.body?.cancel();
        if (redirect === "error") throw new TypeError(`redirected to ${location}`);
        if (hops >= 20) throw new TypeError("too many redirects");
        url = new URL(location, url);
        continue;
      }
      Object.defineProperty(res, "url", { value: url.href });
      Object.defineProperty(res, "redirected", { value: hops > 0 });
      return res;
    }
  }

  async #fetchOnce(url, method, init) {
    const headers = new Headers(init.headers ?? {});
    if (!headers.has("accept")) headers.set("Accept", "*/*");
    if (!headers.has("accept-encoding")) headers.set("Accept-Encoding", "gzip, deflate");
    headers.set("Connection", "close");
    const request = buildRequest(method, url.host, url.pathname + url.search, [...headers]);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const https = url.protocol === "https:";
    const port = url.port ? Number(url.port) : https ? 443 : 80;
    init.signal?.throwIfAborted();
    let pair = await this.connect(host, port, init);
    if (https) {
      const roots = init.caCerts ? derCertificates(init.caCerts) : this.#roots;
      pair = await tlsPair(pair, host, roots);
    }
    const { readable, writable, close } = pair;
    // Aborting closes the stream: a read in progress ends and the body errors as truncated.
    init.signal?.addEventListener("abort", close, { once: true });
    const parser = new HttpResponseParser(method === "HEAD", init.maxBody ?? Infinity);
    const reader = readable.getReader();
    let head;
    let ended = false;
    const pending = [];
    // Read once from the stream and parse; the parser throws on a truncated response.
    const step = async () => {
      const { value, done } = await reader.read();
      for (const ev of done ? parser.finish() : parser.feed(value)) {
        if (ev.kind === "head") head = ev;
        else if (ev.kind === "body") pending.push(ev.data);
        else ended = true;
      }
      if (done && !ended) throw new TypeError("the stream ended before the response");
    };
    try {
      const w = writable.getWriter();
      await w.write(request);
      w.releaseLock();
      while (!head) await step();
    } catch (e) {
      close();
      parser.free();
      throw e;
    }
    let finished = false;
    const finish = () => {
      if (!finished) {
        finished = true;
        close();
        parser.free();
      }
    };
    if (ended && pending.length === 0) finish();
    let body = new ReadableStream(
      {
        async pull(ctrl) {
          try {
            while (pending.length === 0 && !ended) await step();
            if (pending.length > 0) {
              ctrl.enqueue(pending.shift());
            } else {
              ctrl.close();
              finish();
            }
          } catch (e) {
            ctrl.error(e);
            finish();
          }
        },
        cancel() {
          finish();
        },
      },
      { highWaterMark: 0 },
    );
    const responseHeaders = new Headers();
    for (const [name, value] of head.headers) {
      try {
        responseHeaders.append(name, value);
      } catch {
        // a header the Headers class refuses is dropped
      }
    }
    const encoding = (responseHeaders.get("content-encoding") ?? "").trim().toLowerCase();
    if (encoding === "gzip" || encoding === "x-gzip") body = body.pipeThrough(new DecompressionStream("gzip"));
    else if (encoding === "deflate") body = body.pipeThrough(new DecompressionStream("deflate"));
    if (NULL_BODY.has(head.status) || method === "HEAD") {
      await body.cancel();
      body = null;
    }
    return new Response(body, { status: head.status, statusText: head.statusText, headers: responseHeaders });
  }

  /** The circuits, for display. */
  circuits() {
    return this.#c.circuits();
  }

  /** New streams get fresh circuits; open streams run to completion. */
  newIdentity() {
    this.#c.newIdentity();
  }

  /** Close every circuit and connection. */
  close() {
    if (this.#c) {
      this.#c.close();
      this.#c.free();
      this.#c = undefined;
    }
  }
}
