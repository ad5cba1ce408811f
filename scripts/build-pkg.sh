#!/usr/bin/env bash
# Builds the browser package pkg/ (README: "Browser package"): op-wasm in release mode for
# wasm32, wasm-bindgen --target web, wasm-opt (npm binaryen; Debian's breaks wasm-bindgen
# modules) without the name section, the hand-written API (op-wasm/js/), then prints the sizes.
#
#   bash scripts/build-pkg.sh            # opt-level 3 + wasm-opt -O3 (speed: wasm AES is the bottleneck)
#   OPT_LEVEL=z bash scripts/build-pkg.sh  # opt-level "z" + wasm-opt -Oz (smaller, slower AES)
#
# Honours CARGO_TARGET_DIR. Needs scripts/setup.sh (wasm32 target, wasm-bindgen, tests/browser/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/pkg
opt_level=${OPT_LEVEL:-3}
target_dir=${CARGO_TARGET_DIR:-$root/target}
wasm_opt=$root/tests/browser/node_modules/.bin/wasm-opt

echo "build-pkg: cargo build -p op-wasm --release --target wasm32-unknown-unknown (opt-level $opt_level)"
CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
  cargo build -q -p op-wasm --release --target wasm32-unknown-unknown
wasm=$target_dir/wasm32-unknown-unknown/release/op_wasm.wasm

# Generated files are replaced; the committed package.json and README.md stay.
find "$out" -maxdepth 1 -type f ! -name package.json ! -name README.md -delete
wasm-bindgen --target web --out-dir "$out" "$wasm"

if [ -x "$wasm_opt" ]; then
  case $opt_level in
    s | z) level=-O$opt_level ;;
    *) level=-O3 ;;
  esac
  # The features rustc enables by default for wasm32 (wasm-bindgen drops the features section).
  "$wasm_opt" "$level" --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$out/op_wasm_bg.wasm" -o "$out/op_wasm_bg.wasm.opt"
  mv "$out/op_wasm_bg.wasm.opt" "$out/op_wasm_bg.wasm"
else
  echo "build-pkg: $wasm_opt missing (run scripts/setup.sh): module left unoptimised" >&2
fi

cp op-wasm/js/index.js op-wasm/js/index.d.ts "$out/"

node - "$out" <<'JS'
const fs = require("node:fs"), zlib = require("node:zlib"), path = require("node:path");
const dir = process.argv[2];
const files = ["op_wasm_bg.wasm", "op_wasm.js", "index.js"];
const kb = (n) => (n / 1024).toFixed(1).padStart(8) + " KB";
console.log("\n| file | raw | gzip -9 |\n|---|---|---|");
let raw = 0, gz = 0;
for (const f of files) {
  const b = fs.readFileSync(path.join(dir, f));
  const z = zlib.gzipSync(b, { level: 9 }).length;
  raw += b.length; gz += z;
  console.log(`| ${f} | ${kb(b.length)} | ${kb(z)} |`);
}
console.log(`| total | ${kb(raw)} | ${kb(gz)} |`);
// The module must instantiate: a quick structural check of what wasm-opt wrote.
new WebAssembly.Module(fs.readFileSync(path.join(dir, "op_wasm_bg.wasm")));
JS
