// Lists the import modules of .wasm files and fails if any imports from "env", which means a
// native (C or libc) dependency slipped into code that must run in the browser.
import { readFileSync } from "node:fs";

let bad = 0;
for (const path of process.argv.slice(2)) {
  const mod = new WebAssembly.Module(readFileSync(path));
  const modules = [...new Set(WebAssembly.Module.imports(mod).map((i) => i.module))];
  const env = WebAssembly.Module.imports(mod).filter((i) => i.module === "env");
  console.log(`${path}: imports from [${modules.join(", ")}]`);
  if (env.length > 0) {
    console.error(`  FAIL: imports from "env": ${env.map((i) => i.name).join(", ")}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
