#!/usr/bin/env bash
# Relay-crypto benchmark: our per-cell costs (criterion) next to what the same work costs with
# OpenSSL's AES-128-CTR and SHA-1, which is what C tor uses for relay cells. Prints a table
# with ratios (ours / OpenSSL; lower is better, 1.0 = parity). Both are measured in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "bench.sh needs openssl" >&2; exit 1; }

ours=$(mktemp); trap 'rm -f "$ours"' EXIT
cargo bench -p onion-core --bench relay_crypto -- --warm-up-time 1 --measurement-time 3 \
  --output-format bencher 2>/dev/null | tee "$ours" | grep -E '^test ' || true

speed() { # bytes/s of one primitive on 509-byte inputs
  openssl speed -evp "$1" -bytes 509 -seconds 2 2>/dev/null | awk -v n="$1" 'tolower($1) == n {print $2}'
}
aes=$(speed aes-128-ctr)
sha=$(speed sha1)

python3 - "$ours" "$aes" "$sha" <<'PY'
import re, sys
ours_file, aes, sha = sys.argv[1], sys.argv[2], sys.argv[3]
def bps(s):  # openssl prints e.g. "1234567.89k" (1000s of bytes per second)
    m = re.match(r"([\d.]+)k", s)
    return float(m[1]) * 1000 if m else None
aes_ns = 509 / bps(aes) * 1e9
sha_ns = 509 / bps(sha) * 1e9
# Work per benchmark, in AES layers and SHA-1 digest updates of one 509-byte body.
work = {
    "client_encrypt_hop3": (3, 1),
    "relay_decrypt_forward_passthrough": (1, 0),
    "relay_decrypt_forward_recognized": (1, 1),
    "client_decrypt_from_hop3": (3, 1),
}
print()
print(f"{'per 509-byte cell':<36} {'ours ns':>9} {'OpenSSL ns':>11} {'ratio':>6} {'ours MB/s':>10}")
for line in open(ours_file):
    m = re.match(r"test relay_crypto/(\S+)\s+\.\.\. bench:\s+([\d,]+) ns/iter", line)
    if not m or m[1] not in work:
        continue
    ns = float(m[2].replace(",", ""))
    a, s = work[m[1]]
    ref = a * aes_ns + s * sha_ns
    print(f"{m[1]:<36} {ns:>9.0f} {ref:>11.0f} {ns/ref:>6.2f} {509/ns*1e3:>10.0f}")
print(f"(OpenSSL on this machine: AES-128-CTR {bps(aes)/1e6:.0f} MB/s, SHA-1 {bps(sha)/1e6:.0f} MB/s on 509 B)")
PY

# Whole circuits, ours vs C tor in this run (scripts/bench-circuits.sh); BENCH_CIRCUITS=0 skips.
if [ "${BENCH_CIRCUITS:-1}" != 0 ]; then
  echo
  bash scripts/bench-circuits.sh
fi
