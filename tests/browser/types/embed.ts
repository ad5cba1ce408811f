// Type-checks the package's declarations (pkg/index.d.ts, generated pkg/op_wasm.d.ts) the way
// an embedder uses them; `tsc -p tests/browser/types` fails if the API and its types disagree.
import { TorClient, type Circuit, type TorEvent } from "../../../pkg/index.js";
import { Client, HttpResponseParser } from "../../../pkg/op_wasm.js";

// The low-level module's generated types.
export function lowLevel(c: Client): Promise<unknown> {
  const p = new HttpResponseParser(false, 1e6);
  const events: unknown[] = Array.from(p.feed(new Uint8Array([72, 84])));
  p.free();
  return events.length ? c.read(c.connect("example.com", 80, undefined)) : c.ready();
}

export async function example(): Promise<number> {
  const tor: TorClient = await TorClient.create({
    network: "/network.json",
    hops: 3,
    circuits: 2,
    circuitLifetime: 600_000,
    onProgress: (percent: number, phase: string) => console.log(percent, phase),
    onCircuit: (c: Circuit) => console.log(c.path.map((h) => h.nickname).join(" -> ")),
    onEvent: (e: TorEvent) => {
      if (e.type === "circuitFailed") console.log(e.error);
    },
  });
  const res: Response = await tor.fetch("http://example.com/", { isolation: "tab-1", redirect: "manual" });
  const s = await tor.connect("example.com", 80, { isolation: "tab-1" });
  const w = s.writable.getWriter();
  await w.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
  const r = await s.readable.getReader().read();
  s.close();
  const addrs: string[] = await tor.resolve("example.com");
  const circuits: Circuit[] = tor.circuits();
  tor.newIdentity();
  tor.close();
  return res.status + (r.value?.length ?? 0) + addrs.length + circuits.length;
}
