// The dev network's page: bootstrap the in-page OP from /network.json, show circuits, fetch
// URLs through Tor. Uses only the package's public API (pkg/index.js).
import { TorClient } from "/pkg/index.js";

const $ = (id) => document.getElementById(id);

function log(text, cls) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  if (cls) li.className = cls;
  $("log").prepend(li);
}

const pathText = (c) => c.path.map((h) => `${h.nickname} (${h.rsaId.slice(0, 8)}, ${h.handshake ?? "?"})`).join(" → ");

function showCircuits(client) {
  const ul = $("circuits");
  ul.replaceChildren();
  for (const c of client.circuits()) {
    const li = document.createElement("li");
    const state = `${c.built ? "built" : "building"}${c.dirty ? ", used" : ""}, ${c.streams} stream(s)`;
    li.textContent = `#${c.id} ${c.purpose} [${state}]: ${pathText(c)}`;
    ul.append(li);
  }
}

async function main() {
  let client;
  try {
    client = await TorClient.create({
      network: "/network.json",
      onProgress: (percent, phase) => {
        $("progress").value = percent;
        $("phase").textContent = phase;
      },
      onEvent: (ev) => {
        if (ev.type === "circuitBuilt") log(`circuit built: ${pathText(ev.circuit)}`);
        else if (ev.type === "circuitFailed") log(`circuit failed: ${ev.error}`, "error");
        else if (ev.type === "circuitClosed") log(`circuit #${ev.id} closed: ${ev.reason}`);
        else if (ev.type === "bootstrap") log(`bootstrap ${ev.percent}%: ${ev.phase}`);
      },
    });
  } catch (e) {
    $("phase").textContent = `bootstrap failed: ${e.message ?? e}`;
    $("phase").className = "error";
    return;
  }
  $("progress").value = 100;
  $("phase").textContent = "ready";
  $("go").disabled = false;
  $("newid").disabled = false;
  setInterval(() => showCircuits(client), 1000);
  showCircuits(client);

  $("newid").onclick = () => {
    client.newIdentity();
    log("new identity: new streams get fresh circuits");
  };
  $("fetch").onsubmit = async (e) => {
    e.preventDefault();
    $("result").textContent = "fetching…";
    $("result").className = "";
    $("body").textContent = "";
    const t0 = performance.now();
    try {
      const res = await client.fetch($("url").value);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const ms = performance.now() - t0;
      const rate = bytes.length / 1024 / (ms / 1000);
      $("result").textContent = `${res.status} ${res.statusText}: ${bytes.length} bytes in ${ms.toFixed(0)} ms (${rate.toFixed(0)} KB/s)`;
      const type = res.headers.get("content-type") ?? "";
      $("body").textContent = /^text\/|json|xml|javascript/.test(type)
        ? new TextDecoder().decode(bytes.subarray(0, 64 << 10))
        : `(${type || "binary"}; first bytes: ${[...bytes.subarray(0, 32)].map((b) => b.toString(16).padStart(2, "0")).join(" ")})`;
    } catch (err) {
      $("result").textContent = `failed: ${err.message ?? err}`;
      $("result").className = "error";
    }
  };
}

main();
