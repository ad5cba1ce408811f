// Types of the onion-wasm package's public API (index.js).

/** One hop of a circuit. */
export interface Hop {
  nickname: string;
  /** RSA identity, 40 hex digits. */
  rsaId: string;
  /** TLS ORPort and/or WebSocket URL. */
  addresses: string[];
  /** "ntor-v3", "ntor", "TAP", ... or null if not chosen yet. */
  handshake: string | null;
}

/** A circuit, for display. */
export interface Circuit {
  id: number;
  purpose: "exit" | "directory" | "seed";
  path: Hop[];
  built: boolean;
  dirty: boolean;
  isolation: string | null;
  streams: number;
}

/** What the client reports to onEvent. */
export type TorEvent =
  | { type: "bootstrap"; percent: number; phase: string }
  | { type: "ready" }
  | { type: "bootstrapFailed"; error: string }
  | { type: "circuitBuilt"; circuit: Circuit }
  | { type: "circuitFailed"; path: Hop[]; error: string }
  | { type: "circuitClosed"; id: number; reason: string }
  | AssociatedEvent
  | { type: "associateRefused"; fakeDomain: string }
  | {
      type: "seedRequestDone";
      requestId: string;
      /** Where the request went, "host:port". */
      target: string;
      bytesIn: number;
      bytesOut: number;
      error: string | null;
    }
  | { type: "associationClosed"; fakeDomain: string; reason: string };

/** associate() succeeded: RELAY_ASSOCIATE was sent on CID. */
export interface AssociatedEvent {
  type: "associated";
  fakeDomain: string;
  /** CID's circuit id. */
  circuit: number;
}

export interface TorClientOptions {
  /** The network description: an object, its JSON text, or a URL to fetch it from. */
  network: object | string | URL;
  /** Hops per circuit, 1 to 5 (default 3). */
  hops?: number;
  /** Clean circuits kept ready (default 2). */
  circuits?: number;
  /** A circuit that carried streams gets no new ones after this many ms (default 600000). */
  circuitLifetime?: number;
  /** Idle circuits are renewed this often, ms (default 600000). */
  circuitKeepalive?: number;
  /** Streams share pooled circuits (default true); false: a fresh circuit per stream. */
  oneCircuit?: boolean;
  /** The seed's CREATE_FAST_WS on hop 1 (default false; weaker authentication of hop 1). */
  createFastWs?: boolean;
  /**
   * The seed's RELAY_INFO (default false; own network only, needs `associate`): hops after
   * the first that use TAP get their onion skin and DH secret computed by the entry OR of the
   * association, over its CID. This hands those hops' keys to the entry OR (it can read and
   * forge their traffic); circuits needing it wait until the association is made.
   */
  useRelayInfo?: boolean;
  hopTimeout?: number;
  connectTimeout?: number;
  streamTimeout?: number;
  onProgress?: (percent: number, phase: string) => void;
  onCircuit?: (circuit: Circuit) => void;
  onEvent?: (event: TorEvent) => void;
  /** Certificates trusted for https: (PEM text or DER bytes) instead of the bundled web PKI roots. */
  caCerts?: Array<string | Uint8Array | ArrayBuffer>;
  /** Where to load op_wasm_bg.wasm from (default: next to the module). */
  wasmUrl?: string | URL;
}

/** A TCP stream through Tor. */
export interface TorStream {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): void;
}

export interface TorRequestInit extends RequestInit {
  /** Streams with different isolation keys never share a circuit. */
  isolation?: string;
  /** Certificates trusted for this https: request (PEM text or DER bytes). */
  caCerts?: Array<string | Uint8Array | ArrayBuffer>;
  /** Largest body accepted, bytes (default unbounded). */
  maxBody?: number;
}

/** Counters of fetch()'s connections. */
export interface FetchStats {
  /** New connections (each a Tor stream, with TLS for https:). */
  connectionsOpened: number;
  /** Requests sent on a kept-alive connection instead of a new one. */
  connectionsReused: number;
  /** Kept-alive connections idle now. */
  idle: number;
}

export declare class TorClient {
  private constructor();
  /** Start a client; resolves once the directory is verified. */
  static create(options: TorClientOptions): Promise<TorClient>;
  /** A stream to host:port through the exit of a circuit. */
  connect(host: string, port: number, options?: { isolation?: string }): Promise<TorStream>;
  /** Resolve a host name at an exit. */
  resolve(host: string, options?: { isolation?: string }): Promise<string[]>;
  /**
   * fetch() through Tor (any method and body; https: with TLS inside wasm, http: visible to
   * the exit). Idle HTTP/1.1 connections to the same origin with the same isolation key are
   * kept (at most 4 per origin, 30 s) and carry the next requests.
   */
  fetch(input: string | URL | Request, init?: TorRequestInit): Promise<Response>;
  /** fetch()'s connections: Tor streams opened, requests on a kept-alive one, idle ones now. */
  fetchStats(): FetchStats;
  /**
   * The seed's iAnonym mode (own networks): bind fakeDomain to a one-hop circuit to the entry
   * OR; requests its WS_OP_SOCKS port relays for fakeDomain go to options.origin
   * ("host:port"), those for host.<fakeDomain> to host, through this client's circuits.
   * Rejects if the OR refuses the domain.
   */
  associate(fakeDomain: string, options?: { origin?: string }): Promise<AssociatedEvent>;
  /** End the association. */
  dissociate(): void;
  /** The associated fake domain, if any. */
  associatedDomain(): string | undefined;
  circuits(): Circuit[];
  newIdentity(): void;
  close(): void;
}
