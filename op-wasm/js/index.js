// The public API of the onion-wasm package: `TorClient` on top of the wasm module's low-level
// `Client` (op-wasm/src/client.rs). Streams become WHATWG streams; `fetch` builds requests and
// parses responses with the core's HTTP/1.1 code (op-wasm/src/http.rs) and returns a standard
// `Response`. Works in a Window and in a dedicated Worker (no window-only API).
import init, { Client, HttpResponseParser, TlsClient, buildRequest, encodeChunk, lastChunk } from "./op_wasm.js";

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
/** Idle kept-alive connections per origin and isolation key. */
const MAX_IDLE_PER_ORIGIN = 4;
/** An idle kept-alive connection is closed after this many ms. */
const IDLE_TIMEOUT_MS = 30_000;
/** Request headers the request sets itself (fetch() forbids them too). */
const FRAMING_HEADERS = new Set(["content-length", "transfer-encoding", "host", "connection", "keep-alive"]);

/**
 * A request body for the wire: `{ bytes, type }` (sent with Content-Length; `type` the default
 * Content-Type), `{ stream }` (a ReadableStream, sent chunked), or null. Strings, ArrayBuffers,
 * typed arrays, DataViews, Blobs, URLSearchParams and FormData are serialized as the browser's
 * own fetch() does (through `Response`).
 */
async function requestBody(body) {
  if (body === undefined || body === null) return null;
  if (body instanceof ReadableStream) return { stream: body };
  const r = new Response(body);
  return { bytes: new Uint8Array(await r.arrayBuffer()), type: r.headers.get("content-type") };
}

/** Bytes of a chunk a ReadableStream body gave. */
function chunkBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (typeof chunk === "string") return new TextEncoder().encode(chunk);
  throw new TypeError("a request body stream must give Uint8Array, ArrayBuffer or string chunks");
}

export class TorClient {
  #c;
  #roots;
  /** Idle kept-alive fetch() connections: key (origin, isolation) -> connections. */
  #idle = new Map();
  #opened = 0;
  #reused = 0;
  /** Incremented by newIdentity(). */
  #identity = 0;

  constructor(client, roots) {
    this.#c = client;
    this.#roots = roots;
  }

  /**
   * Start a client and wait until the directory is verified.
   * Options: network (object, JSON text or URL), hops (3), circuits (2), circuitLifetime (ms),
   * circuitKeepalive (ms), oneCircuit (true), createFastWs (false), useRelayInfo (false: hands
   * TAP hops' keys to the entry OR), hopTimeout, connectTimeout,
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
   * visible to the exit. Any method; request bodies (string, ArrayBuffer, typed array, Blob,
   * URLSearchParams, FormData with Content-Length; ReadableStream chunked); HTTP/1.1
   * keep-alive (an idle connection to the same origin with the same isolation key carries
   * the next request); redirects per init.redirect; gzip/deflate bodies decoded with
   * DecompressionStream. init.isolation puts the request on circuits of its own; init.signal
   * aborts it.
   */
  async fetch(input, init = {}) {
    const req = input instanceof Request ? input : undefined;
    let url = new URL(req ? req.url : String(input), globalThis.location?.href);
    let method = (init.method ?? req?.method ?? "GET").toUpperCase();
    const redirect = init.redirect ?? "follow";
    const headers = new Headers(init.headers ?? req?.headers ?? {});
    let body = await requestBody(init.body !== undefined ? init.body : req?.body);
    if (body && (method === "GET" || method === "HEAD")) {
      throw new TypeError(`a ${method} request cannot have a body`);
    }
    if (body?.type && !headers.has("content-type")) headers.set("Content-Type", body.type);
    for (let hops = 0; ; hops++) {
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(`${url.protocol} URLs are not supported`);
      }
      const res = await this.#fetchOnce(url, method, headers, body, init);
      const location = res.headers.get("location");
      if (REDIRECT.has(res.status) && location && redirect !== "manual") {
        await res.body?.cancel();
        if (redirect === "error") throw new TypeError(`redirected to ${location}`);
        if (hops >= 20) throw new TypeError("too many redirects");
        url = new URL(location, url);
        // As browsers: 303 (and 301/302 after a POST) become a GET without the body; 307/308
        // repeat the request, which a streamed body cannot.
        if (res.status === 303 ? method !== "HEAD" : (res.status === 301 || res.status === 302) && method === "POST") {
          method = "GET";
          body = null;
          for (const h of ["content-type", "content-encoding", "content-language", "content-location"]) headers.delete(h);
        } else if (body?.stream) {
          throw new TypeError(`a ${res.status} redirect cannot repeat a streamed request body`);
        }
        continue;
      }
      Object.defineProperty(res, "url", { value: url.href });
      Object.defineProperty(res, "redirected", { value: hops > 0 });
      return res;
    }
  }

  /** Counters of fetch()'s connections: opened (new Tor streams) and reused (keep-alive). */
  fetchStats() {
    let idle = 0;
    for (const list of this.#idle.values()) idle += list.length;
    return { connectionsOpened: this.#opened, connectionsReused: this.#reused, idle };
  }

  /** A kept-alive idle connection for `key`, if any. */
  #takeIdle(key) {
    const list = this.#idle.get(key);
    const conn = list?.pop();
    if (list && list.length === 0) this.#idle.delete(key);
    if (conn) clearTimeout(conn.timer);
    return conn;
  }

  /** Keep `conn` for the next request to its origin (bounded, closed when idle too long). */
  #putIdle(conn) {
    // Connections opened before newIdentity() run on the old circuits: not kept.
    if (!this.#c || conn.key === null || conn.identity !== this.#identity) return conn.pair.close();
    let list = this.#idle.get(conn.key);
    if (!list) this.#idle.set(conn.key, (list = []));
    if (list.length >= MAX_IDLE_PER_ORIGIN) return conn.pair.close();
    conn.timer = setTimeout(() => {
      const l = this.#idle.get(conn.key);
      const i = l ? l.indexOf(conn) : -1;
      if (i >= 0) {
        l.splice(i, 1);
        if (l.length === 0) this.#idle.delete(conn.key);
        conn.pair.close();
      }
    }, IDLE_TIMEOUT_MS);
    list.push(conn);
  }

  /** Close every idle connection. */
  #dropIdle() {
    for (const list of this.#idle.values()) {
      for (const conn of list) {
        clearTimeout(conn.timer);
        conn.pair.close();
      }
    }
    this.#idle.clear();
  }

  /** A new connection (Tor stream, then TLS for https:) for `key`. */
  async #open(url, init, key) {
    const identity = this.#identity;
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const https = url.protocol === "https:";
    const port = url.port ? Number(url.port) : https ? 443 : 80;
    let pair = await this.connect(host, port, init);
    if (https) {
      const roots = init.caCerts ? derCertificates(init.caCerts) : this.#roots;
      pair = await tlsPair(pair, host, roots);
    }
    this.#opened++;
    return {
      key,
      identity,
      pair,
      reader: pair.readable.getReader(),
      writer: pair.writable.getWriter(),
      timer: undefined,
    };
  }

  async #fetchOnce(url, method, baseHeaders, body, init) {
    const headers = new Headers(baseHeaders);
    if (!headers.has("accept")) headers.set("Accept", "*/*");
    if (!headers.has("accept-encoding")) headers.set("Accept-Encoding", "gzip, deflate");
    const wire = [...headers].filter(([name]) => !FRAMING_HEADERS.has(name.toLowerCase()));
    const head = buildRequest(method, url.host, url.pathname + url.search, wire, body?.bytes, Boolean(body?.stream));
    init.signal?.throwIfAborted();
    // Same origin and same isolation key: an idle kept-alive connection may carry it. A
    // request with CA certificates of its own is never pooled (its TLS was checked against
    // those roots only).
    const key = init.caCerts ? null : `${url.protocol}//${url.host}\n${init.isolation ?? ""}`;
    for (let attempt = 0; ; attempt++) {
      let conn = attempt === 0 && key !== null ? this.#takeIdle(key) : undefined;
      const reused = conn !== undefined;
      conn ??= await this.#open(url, init, key);
      if (reused) this.#reused++;
      try {
        return await this.#exchange(conn, method, head, body, init);
      } catch (e) {
        // A kept-alive connection the server closed meanwhile fails before any response
        // byte: once more on a new connection, if the body can be sent again.
        if (reused && e?.noResponse && !body?.stream && !init.signal?.aborted) continue;
        throw e;
      }
    }
  }

  /** One request and its response on `conn`; `conn` goes back to the pool after the body. */
  async #exchange(conn, method, head, body, init) {
    const { pair, reader, writer } = conn;
    const parser = new HttpResponseParser(method === "HEAD", init.maxBody ?? Infinity);
    let closed = false;
    const abort = () => close();
    const close = () => {
      if (!closed) {
        closed = true;
        pair.close();
        parser.free();
        init.signal?.removeEventListener("abort", abort);
      }
    };
    // Aborting closes the stream: a read in progress ends and the body errors as truncated.
    init.signal?.addEventListener("abort", abort, { once: true });
    let responseHead;
    let ended = false;
    let received = false;
    const pending = [];
    // Read once from the stream and parse; the parser throws on a truncated response.
    const step = async () => {
      const { value, done } = await reader.read();
      if (!done) received = true;
      for (const ev of done ? parser.finish() : parser.feed(value)) {
        if (ev.kind === "head") responseHead = ev;
        else if (ev.kind === "body") pending.push(ev.data);
        else ended = true;
      }
      if (done && !ended) throw new TypeError("the stream ended before the response");
    };
    // The request is sent while the response is read (a server may answer early).
    let sendError;
    let sent = false;
    (async () => {
      await writer.write(head);
      if (body?.stream) {
        const r = body.stream.getReader();
        for (;;) {
          const { value, done } = await r.read();
          if (done) break;
          const piece = encodeChunk(chunkBytes(value));
          if (piece.length > 0) await writer.write(piece);
        }
        await writer.write(lastChunk());
      }
      sent = true;
    })().catch((e) => {
      sendError = e;
    });
    try {
      while (!responseHead) {
        if (sendError) throw sendError;
        await step();
      }
    } catch (e) {
      close();
      // Nothing came back: on a kept-alive connection, the server may have closed it.
      if (!received && e && typeof e === "object") e.noResponse = true;
      throw e;
    }
    // After the end: back to the pool if the server keeps the connection and the request
    // was sent whole; otherwise closed.
    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;
      if (!closed && ended && sent && parser.reusable()) {
        closed = true;
        parser.free();
        init.signal?.removeEventListener("abort", abort);
        this.#putIdle(conn);
      } else {
        close();
      }
    };
    if (ended) await finish();
    let stream = new ReadableStream(
      {
        async pull(ctrl) {
          try {
            while (pending.length === 0 && !ended) await step();
            if (ended) await finish();
            if (pending.length > 0) {
              ctrl.enqueue(pending.shift());
            } else {
              ctrl.close();
            }
          } catch (e) {
            ctrl.error(e);
            close();
          }
        },
        cancel() {
          // The rest of the response is not read: the connection cannot carry another.
          if (!finished) {
            finished = true;
            close();
          }
        },
      },
      { highWaterMark: 0 },
    );
    const responseHeaders = new Headers();
    for (const [name, value] of responseHead.headers) {
      try {
        responseHeaders.append(name, value);
      } catch {
        // a header the Headers class refuses is dropped
      }
    }
    const encoding = (responseHeaders.get("content-encoding") ?? "").trim().toLowerCase();
    if (encoding === "gzip" || encoding === "x-gzip") stream = stream.pipeThrough(new DecompressionStream("gzip"));
    else if (encoding === "deflate") stream = stream.pipeThrough(new DecompressionStream("deflate"));
    if (NULL_BODY.has(responseHead.status) || method === "HEAD") {
      if (!ended) await stream.cancel();
      stream = null;
    }
    return new Response(stream, {
      status: responseHead.status,
      statusText: responseHead.statusText,
      headers: responseHeaders,
    });
  }

  /**
   * The seed's iAnonym mode: bind `fakeDomain` to a one-hop circuit (CID) to the entry OR
   * (RELAY_ASSOCIATE; own networks only). A browser whose SOCKS proxy is that OR's WS_OP_SOCKS
   * port then browses through this page: its requests for `fakeDomain` go to
   * `options.origin` ("host:port"), those for `host.<fakeDomain>` to `host`, through this
   * client's circuits. Resolves with `{ type: "associated", fakeDomain, circuit }` once
   * RELAY_ASSOCIATE is sent; rejects if the OR refuses the domain (taken: pick another one).
   * Later: `seedRequestDone` and `associationClosed` events (onEvent).
   */
  associate(fakeDomain, { origin } = {}) {
    let host;
    let port;
    if (origin !== undefined && origin !== null) {
      const m = /^\[?(.+?)\]?:(\d+)$/.exec(String(origin));
      port = m ? Number(m[2]) : NaN;
      if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
        return Promise.reject(new TypeError(`origin: "host:port" expected, got ${origin}`));
      }
      host = m[1];
    }
    return this.#c.associate(String(fakeDomain), host, port);
  }

  /** End the association (its requests end). */
  dissociate() {
    this.#c.dissociate();
  }

  /** The associated fake domain, or undefined. */
  associatedDomain() {
    return this.#c.associatedDomain();
  }

  /** The circuits, for display. */
  circuits() {
    return this.#c.circuits();
  }

  /** New streams get fresh circuits; open streams run to completion. */
  newIdentity() {
    // Kept-alive connections run on the old circuits: new requests must not reuse them.
    this.#dropIdle();
    this.#identity++;
    this.#c.newIdentity();
  }

  /** Close every circuit and connection. */
  close() {
    this.#dropIdle();
    if (this.#c) {
      this.#c.close();
      this.#c.free();
      this.#c = undefined;
    }
  }
}
