#!/usr/bin/env python3
"""Private C tor network on 127.0.0.1 for end-to-end tests (Python 3, stdlib only).

    tornet.py up --dir DIR [--authorities 3] [--relays 3] [--exits 2] [--client] ...
    tornet.py down --dir DIR
    tornet.py bridge-client --dir DIR NAME:ADDR:PORT:FINGERPRINT   (add a client to a running network)

`up` returns once every relay (and the client) logged "Bootstrapped 100%"; the tor
processes keep running (pids in DIR/pids) and DIR/network.json describes the network.
See README.md next to this file. Recipe: /work/shared/notes/tornet.md.

Safety: every address written to a torrc is 127.0.0.1, every tor process binds its
outgoing sockets to 127.0.0.1 (OutboundBindAddress), so a connection to any other
address fails locally with EINVAL; exits resolve names only through 127.0.0.1.
"""

import argparse
import base64
import binascii
import calendar
import concurrent.futures
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

LOOPBACK = "127.0.0.1"
TOR = os.environ.get("TORNET_TOR", "tor")
TOR_GENCERT = os.environ.get("TORNET_TOR_GENCERT", "tor-gencert")
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "onion-tornet-keys")
MARKER = ".tornet"
NETWORK_JSON = "network.json"
PIDS = "pids"

# Voting schedule (seconds). The first vote lands FIRST_VOTE_AFTER s after launch.
VOTING_INTERVAL = 10
VOTE_DELAY = 2
DIST_DELAY = 2
FIRST_VOTE_AFTER = int(os.environ.get("TORNET_FIRST_VOTE_AFTER", "4"))

BOOTSTRAPPED = "Bootstrapped 100%"


class TornetError(Exception):
    """A readiness or configuration failure, reported as one clear message."""


def log(msg):
    print("tornet: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- nodes


class Node:
    """One tor process: authority, exit, middle, client or bridge-client."""

    def __init__(self, nickname, role, root):
        self.nickname = nickname
        self.role = role
        self.home = os.path.join(root, nickname)
        self.datadir = os.path.join(self.home, "data")
        self.torrc = os.path.join(self.home, "torrc")
        self.logfile = os.path.join(self.home, "notice.log")
        self.stdout = os.path.join(self.home, "stdout.log")
        self.orport = None
        self.dirport = None
        self.socksport = None
        self.controlport = None
        self.fingerprint = None  # RSA identity, 40 upper-case hex
        self.ed25519 = None  # base64, unpadded
        self.v3ident = None
        self.ntor_onion_key = None
        self.bridge = None  # "ADDR:PORT FP" for bridge clients
        self.proc = None

    @property
    def is_or(self):
        return self.role in ("authority", "exit", "middle")

    def log_text(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def bootstrapped(self):
        return BOOTSTRAPPED in self.log_text()

    def tail(self, n=25):
        out = []
        for path in (self.logfile, self.stdout):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            if lines:
                out.append("---- %s (last %d lines)" % (path, min(n, len(lines))))
                out.extend(lines[-n:])
        return "\n".join(out) if out else "---- %s: no log yet" % self.nickname


# --------------------------------------------------------------------------- ports


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like tor's listeners: TIME_WAIT leftovers do not block, a listener does.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def allocate_ports(count, base):
    """`count` TCP ports on 127.0.0.1: base, base+1, ... or free ones picked at random
    below the kernel's ephemeral range (so tor's own outgoing connections cannot take
    them between our check and tor's bind)."""
    if base:
        ports = list(range(base, base + count))
        if ports[-1] > 65535:
            raise TornetError("--base-port %d: not enough ports below 65536" % base)
        busy = [p for p in ports if not port_free(p)]
        if busy:
            raise TornetError("ports already in use on 127.0.0.1: %s" % busy)
        return ports
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    lo, hi = 10000, max(10000 + 4 * count + 100, min(low, 65536))
    chosen = []
    for _ in range(100 * count + 100):
        if len(chosen) == count:
            break
        p = random.randrange(lo, hi)
        if p not in chosen and port_free(p):
            chosen.append(p)
    if len(chosen) != count:
        raise TornetError("could not find %d free ports on 127.0.0.1" % count)
    return chosen


# --------------------------------------------------------------------------- keys


def run(cmd, cwd=None, stdin_text=None, timeout=60):
    try:
        r = subprocess.run(cmd, cwd=cwd, input=stdin_text, capture_output=True, text=True,
                           timeout=timeout)
    except FileNotFoundError:
        raise TornetError("%s not found (apt-get install tor)" % cmd[0])
    except subprocess.TimeoutExpired:
        raise TornetError("%s timed out after %d s" % (" ".join(cmd), timeout))
    if r.returncode != 0:
        raise TornetError("%s failed (exit %d):\n%s%s" % (" ".join(cmd), r.returncode,
                                                         r.stdout[-2000:], r.stderr[-2000:]))
    return r.stdout


def cert_expiry(path):
    """Unix time of `dir-key-expires` in an authority certificate, or 0."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("dir-key-expires "):
                    return calendar.timegm(time.strptime(line.split(" ", 1)[1].strip(),
                                                         "%Y-%m-%d %H:%M:%S"))
    except (OSError, ValueError):
        pass
    return 0


def cache_entry_ok(entry, authority):
    keys = os.path.join(entry, "keys")
    if not os.path.isfile(os.path.join(entry, "fingerprint")):
        return False
    needed = ["secret_id_key", "ed25519_master_id_secret_key", "ed25519_master_id_public_key"]
    if authority:
        needed += ["authority_identity_key", "authority_signing_key", "authority_certificate"]
    if not all(os.path.isfile(os.path.join(keys, n)) for n in needed):
        return False
    if authority:
        return cert_expiry(os.path.join(keys, "authority_certificate")) > time.time() + 30 * 86400
    return True


def generate_keys(nickname, authority, cache_dir):
    """Return the cache entry (a directory holding `keys/`) for `nickname`, creating it
    if needed. Safe against concurrent runs: entries appear by atomic rename."""
    entry = os.path.join(cache_dir, nickname)
    if cache_entry_ok(entry, authority):
        return entry, True
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".%s." % nickname, dir=cache_dir)
    try:
        data = os.path.join(tmp, "data")
        # The dirserver line stops tor from knowing any real authority; nothing is
        # contacted anyway: --list-fingerprint only creates the keys and exits.
        run([TOR, "--defaults-torrc", os.devnull, "-f", os.devnull, "--ignore-missing-torrc",
             "--list-fingerprint", "--nickname", nickname, "--orport", "1",
             "--dirserver", "x %s:1 %s" % (LOOPBACK, "f" * 40),
             "--datadirectory", data, "--log", "warn stderr"])
        if authority:
            # No -a: the dir-address line is optional and the DirPort changes per run.
            run([TOR_GENCERT, "--create-identity-key", "-m", "12", "--passphrase-fd", "0"],
                cwd=os.path.join(data, "keys"), stdin_text="\n")
        os.rename(os.path.join(data, "keys"), os.path.join(tmp, "keys"))
        os.rename(os.path.join(data, "fingerprint"), os.path.join(tmp, "fingerprint"))
        shutil.rmtree(data)
        shutil.rmtree(entry, ignore_errors=True)  # a stale or incomplete entry
        try:
            os.rename(tmp, entry)
        except OSError:  # a concurrent run won the race; use its keys
            if not cache_entry_ok(entry, authority):
                raise
        return entry, False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_keys(node, entry):
    dst = os.path.join(node.datadir, "keys")
    os.makedirs(node.datadir, mode=0o700, exist_ok=True)
    os.chmod(node.datadir, 0o700)
    shutil.copytree(os.path.join(entry, "keys"), dst)
    os.chmod(dst, 0o700)
    with open(os.path.join(entry, "fingerprint")) as f:
        node.fingerprint = f.read().split()[1].upper()
    node.ed25519 = ed25519_of_keys(dst)
    if node.role == "authority":
        with open(os.path.join(dst, "authority_certificate")) as f:
            m = re.search(r"^fingerprint ([0-9A-F]{40})$", f.read(), re.M)
        if not m:
            raise TornetError("no fingerprint line in %s/authority_certificate" % dst)
        node.v3ident = m.group(1)


def ed25519_of_keys(keysdir):
    with open(os.path.join(keysdir, "ed25519_master_id_public_key"), "rb") as f:
        raw = f.read()
    if len(raw) != 64 or not raw.startswith(b"== ed25519v1-public"):
        raise TornetError("unexpected %s/ed25519_master_id_public_key" % keysdir)
    return base64.b64encode(raw[32:]).decode().rstrip("=")


# --------------------------------------------------------------------------- torrc


def dirauthority_line(a):
    return "DirAuthority %s orport=%d no-v2 v3ident=%s %s:%d %s" % (
        a.nickname, a.orport, a.v3ident, LOOPBACK, a.dirport, a.fingerprint)


def common_lines(node, dirauth_lines):
    return [
        "# written by tests/tornet/tornet.py",
        "TestingTorNetwork 1",
        "RunAsDaemon 0",
        "DataDirectory %s" % node.datadir,
        "Nickname %s" % node.nickname,
        "Log notice file %s" % node.logfile,
        "SafeLogging 0",
        "ProtocolWarnings 1",
        "ShutdownWaitLength 0",
        'GeoIPFile ""',
        'GeoIPv6File ""',
        "MaxConsensusAgeForDiffs 1 minute",
        "PathsNeededToBuildCircuits 0.67",
        "V3AuthNIntervalsValid 2",
        # Loopback only: outgoing sockets are bound to 127.0.0.1, so connecting to
        # any other address fails with EINVAL before a packet leaves.
        "OutboundBindAddress %s" % LOOPBACK,
        "UseDefaultFallbackDirs 0",
        "ClientUseIPv6 0",
    ] + list(dirauth_lines)


def or_lines(node):
    return [
        "Address %s" % LOOPBACK,
        "ORPort %s:%d" % (LOOPBACK, node.orport),
        "SocksPort 0",
        "ContactInfo tornet",
        "AssumeReachable 1",
        "AssumeReachableIPv6 1",
    ]


def authority_lines(node, exit_fps, start_offset):
    lines = [
        "DirPort %s:%d" % (LOOPBACK, node.dirport),
        "AuthoritativeDirectory 1",
        "V3AuthoritativeDirectory 1",
        "ExitRelay 0",
        "ExitPolicy reject *:*",
        "TestingV3AuthInitialVotingInterval %d" % VOTING_INTERVAL,
        "TestingV3AuthInitialVoteDelay %d" % VOTE_DELAY,
        "TestingV3AuthInitialDistDelay %d" % DIST_DELAY,
        "V3AuthVotingInterval %d" % VOTING_INTERVAL,
        "V3AuthVoteDelay %d" % VOTE_DELAY,
        "V3AuthDistDelay %d" % DIST_DELAY,
        "TestingV3AuthVotingStartOffset %d" % start_offset,
        "TestingAuthDirTimeToLearnReachability 0",
        "TestingDirAuthVoteGuard *",
        "TestingDirAuthVoteHSDir *",
        "TestingMinExitFlagThreshold 0",
        "TestingMinFastFlagThreshold 0",
        "AuthDirMaxServersPerAddr 0",
    ]
    if exit_fps:
        lines.append("TestingDirAuthVoteExit %s" % ",".join(exit_fps))
    return lines


def exit_lines(resolv_conf):
    return [
        "ExitRelay 1",
        "ExitPolicyRejectPrivate 0",
        "ExitPolicyRejectLocalInterfaces 0",
        # An exit accepting only 127.0.0.1 gets no `p` line and is never picked.
        "ExitPolicy accept %s:*,accept *:*" % LOOPBACK,
        "ServerDNSDetectHijacking 0",
        "ServerDNSTestAddresses",
        "ServerDNSAllowBrokenConfig 1",
        # Names resolve only through 127.0.0.1 (nothing listens there: lookups fail).
        "ServerDNSResolvConfFile %s" % resolv_conf,
    ]


def middle_lines():
    return ["ExitRelay 0", "ExitPolicy reject *:*"]


def client_lines(node):
    lines = [
        "SocksPort %s:%d" % (LOOPBACK, node.socksport),
        "ControlPort %s:%d" % (LOOPBACK, node.controlport),
        "CookieAuthentication 0",
    ]
    if node.bridge:
        lines += ["UseBridges 1", "Bridge %s" % node.bridge]
    return lines


def write_torrc(node, lines):
    os.makedirs(node.home, exist_ok=True)
    with open(node.torrc, "w") as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- processes


def record_pid(root, pid):
    with open(os.path.join(root, PIDS), "a") as f:
        f.write("%d\n" % pid)
        f.flush()
        os.fsync(f.fileno())


def start(node, root):
    out = open(node.stdout, "ab")
    try:
        # Own session: the tor outlives `up` and ignores the terminal's ^C.
        node.proc = subprocess.Popen(
            [TOR, "--defaults-torrc", os.devnull, "-f", node.torrc],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=node.home, start_new_session=True, close_fds=True)
    except FileNotFoundError:
        raise TornetError("%s not found (apt-get install tor)" % TOR)
    finally:
        out.close()
    record_pid(root, node.proc.pid)


def check_alive(nodes):
    for n in nodes:
        if n.proc is not None and n.proc.poll() is not None:
            raise TornetError("%s (%s) exited with status %s during startup\n%s" % (
                n.nickname, n.role, n.proc.returncode, n.tail()))


def wait_for(what, deadline, nodes, predicate, stuck_nodes=None, interval=0.25):
    """Poll predicate() until true; fail on timeout or if a started tor died."""
    while True:
        check_alive(nodes)
        if predicate():
            return
        if time.monotonic() >= deadline:
            stuck = stuck_nodes() if stuck_nodes else nodes
            raise TornetError("timed out waiting for %s\n%s" % (
                what, "\n".join(n.tail() for n in stuck)))
        time.sleep(interval)


def tcp_open(port):
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def proc_matches(pid, root):
    """True if pid is a live (non-zombie) tor whose torrc is under root."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in ("Z", "X"):
        return False
    if not argv or os.path.basename(argv[0].decode(errors="replace")) != os.path.basename(TOR):
        return False
    prefix = os.path.abspath(root).encode() + b"/"
    return any(a.startswith(prefix) for a in argv)


def stop_pids(pids, root, term_wait=5.0, kill_wait=3.0):
    """SIGTERM, then SIGKILL what is left; returns pids that would not die."""
    live = [p for p in pids if proc_matches(p, root)]
    for p in live:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    for sig, wait in ((None, term_wait), (signal.SIGKILL, kill_wait)):
        if sig is not None:
            for p in live:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
        end = time.monotonic() + wait
        while time.monotonic() < end:
            _reap()
            live = [p for p in live if proc_matches(p, root)]
            if not live:
                return []
            time.sleep(0.1)
    return live


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def read_pids(root):
    try:
        with open(os.path.join(root, PIDS)) as f:
            return [int(x) for x in f.read().split() if x.isdigit()]
    except OSError:
        return []


# --------------------------------------------------------------------------- directory


def http_get(port, path, timeout=3):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return r.status, body.decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        return None, ""
    finally:
        conn.close()


def parse_consensus(text):
    """{FINGERPRINT: (nickname, flags)} and the valid-after / fresh / valid-until."""
    routers, cur, meta = {}, None, {}
    for line in text.splitlines():
        if line.startswith("r "):
            parts = line.split()
            try:
                ident = base64.b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            except (IndexError, binascii.Error):
                cur = None
                continue
            cur = binascii.hexlify(ident).decode().upper()
            routers[cur] = (parts[1], set())
        elif line.startswith("s ") and cur in routers:
            routers[cur][1].update(line.split()[1:])
        elif line.split(" ", 1)[0] in ("valid-after", "fresh-until", "valid-until"):
            k, v = line.split(" ", 1)
            meta[k] = v.strip()
    return routers, meta


def fetch_consensus(authorities):
    for a in authorities:
        status, text = http_get(a.dirport, "/tor/status-vote/current/consensus")
        if status == 200 and "network-status-version" in text:
            return parse_consensus(text)
    return None, None


def fetch_descriptor(authorities, fp):
    for a in authorities:
        status, text = http_get(a.dirport, "/tor/server/fp/%s" % fp)
        if status == 200 and "router " in text:
            return text
    return ""


# --------------------------------------------------------------------------- up


def parse_bridge_spec(spec, relays):
    """NAME:ADDR:PORT:FINGERPRINT, or NAME:RELAYNICK for one of this network's ORs.
    Returns (name, relay Node or None, "ADDR:PORT FP" or None)."""
    parts = spec.split(":")
    if len(parts) == 2:
        name, nick = parts
        match = [r for r in relays if r.nickname == nick]
        if not match:
            raise TornetError("--bridge-client %s: no relay named %s" % (spec, nick))
        return name, match[0], None
    if len(parts) != 4:
        raise TornetError("--bridge-client %s: expected NAME:ADDR:PORT:FINGERPRINT" % spec)
    name, addr, port, fp = parts
    if addr != LOOPBACK:
        raise TornetError("--bridge-client %s: address must be %s" % (spec, LOOPBACK))
    fp = fp.replace(" ", "").lstrip("$").upper()
    if not re.fullmatch(r"[0-9A-F]{40}", fp) or not port.isdigit() or not 0 < int(port) < 65536:
        raise TornetError("--bridge-client %s: bad port or fingerprint" % spec)
    return name, None, "%s:%s %s" % (addr, port, fp)


def check_nickname(nick):
    if not re.fullmatch(r"[A-Za-z0-9]{1,19}", nick):
        raise TornetError("bad nickname %r (1-19 letters/digits)" % nick)


def prepare_dir(root):
    if os.path.isdir(root) and os.listdir(root):
        if not os.path.exists(os.path.join(root, MARKER)):
            raise TornetError("%s is not empty and is not a tornet directory" % root)
        live = [p for p in read_pids(root) if proc_matches(p, root)]
        if live:
            raise TornetError("%s has a running network (pids %s): run `down` first" % (root, live))
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, MARKER), "w") as f:
        f.write("tornet network directory; `tornet.py down --dir` stops it\n")


def node_json(n):
    d = {"nickname": n.nickname, "role": n.role, "address": LOOPBACK,
         "pid": n.proc.pid if n.proc else None, "torrc": n.torrc, "log": n.logfile,
         "data_directory": n.datadir}
    if n.is_or:
        ntor_hex = None
        if n.ntor_onion_key:
            k = n.ntor_onion_key
            ntor_hex = binascii.hexlify(base64.b64decode(k + "=" * (-len(k) % 4))).decode()
        d.update({"orport": n.orport, "dirport": n.dirport, "fingerprint": n.fingerprint,
                  "ed25519_identity": n.ed25519, "ntor_onion_key": n.ntor_onion_key,
                  "ntor_onion_key_hex": ntor_hex})
    if n.role == "authority":
        d["v3ident"] = n.v3ident
    if n.socksport:
        d.update({"socks_port": n.socksport, "control_port": n.controlport})
    if n.bridge:
        d["bridge"] = n.bridge
    return d


def cmd_up(args):
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    root = os.path.abspath(args.dir)
    if args.relays < 0 or args.authorities < 1 or not 0 <= args.exits <= args.relays:
        raise TornetError("need --authorities >= 1 and 0 <= --exits <= --relays")
    if args.authorities + args.relays < 4:
        # A relay leaves itself out of its own 3-hop paths: it never bootstraps.
        raise TornetError("need --authorities + --relays >= 4 (3-hop paths exclude the relay itself)")
    prepare_dir(root)

    auths = [Node("auth%d" % i, "authority", root) for i in range(args.authorities)]
    exits = [Node("exit%d" % i, "exit", root) for i in range(args.exits)]
    middles = [Node("middle%d" % i, "middle", root) for i in range(args.relays - args.exits)]
    relays = exits + middles
    client = Node("client", "client", root) if args.client else None
    bclients, bridge_relay = [], {}
    for spec in args.bridge_client:
        name, relay, line = parse_bridge_spec(spec, auths + relays)
        check_nickname(name)
        b = Node(name, "bridge-client", root)
        b.bridge = line
        bridge_relay[name] = relay
        bclients.append(b)
    clients = ([client] if client else []) + bclients
    names = [n.nickname for n in auths + relays + clients]
    if len(set(names)) != len(names):
        raise TornetError("duplicate nickname among %s" % names)

    ports = allocate_ports(2 * len(auths) + len(relays) + 2 * len(clients), args.base_port)
    it = iter(ports)
    for a in auths:
        a.orport, a.dirport = next(it), next(it)
    for r in relays:
        r.orport = next(it)
    for c in clients:
        c.socksport, c.controlport = next(it), next(it)

    # Keys: cached per nickname, generated in parallel.
    cache = os.path.abspath(os.path.expanduser(args.key_cache))
    ors = auths + relays
    workers = max(2, os.cpu_count() or 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futs = {n: pool.submit(generate_keys, n.nickname, n.role == "authority", cache)
                for n in ors}
        hits = 0
        for n, fut in futs.items():
            entry, hit = fut.result()
            hits += hit
            install_keys(n, entry)
    log("keys ready (%d/%d from cache %s) after %.1f s"
        % (hits, len(ors), cache, time.monotonic() - t0))
    for b in bclients:  # NAME:RELAYNICK: the fingerprint is known only now
        relay = bridge_relay[b.nickname]
        if relay is not None:
            b.bridge = "%s:%d %s" % (LOOPBACK, relay.orport, relay.fingerprint)

    resolv = os.path.join(root, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\n" % LOOPBACK)
    dirauth = [dirauthority_line(a) for a in auths]
    exit_fps = [e.fingerprint for e in exits]

    # The first valid-after is launch + FIRST_VOTE_AFTER + VOTE_DELAY + DIST_DELAY;
    # the schedule is aligned on the wall clock (multiples of the interval + offset).
    launch = int(time.time()) + 1
    offset = (launch + FIRST_VOTE_AFTER + VOTE_DELAY + DIST_DELAY) % VOTING_INTERVAL
    for a in auths:
        write_torrc(a, common_lines(a, dirauth) + or_lines(a)
                    + authority_lines(a, exit_fps, offset) + args.authority_torrc_extra)
    for e in exits:
        write_torrc(e, common_lines(e, dirauth) + or_lines(e) + exit_lines(resolv)
                    + args.relay_torrc_extra)
    for m in middles:
        write_torrc(m, common_lines(m, dirauth) + or_lines(m) + middle_lines()
                    + args.relay_torrc_extra)
    for c in clients:
        write_torrc(c, common_lines(c, dirauth) + client_lines(c) + args.client_torrc_extra)

    started = []
    try:
        for a in auths:
            start(a, root)
            started.append(a)
        wait_for("authority ports to listen", deadline, started,
                 lambda: all(tcp_open(a.dirport) and tcp_open(a.orport) for a in auths))
        for r in relays:
            start(r, root)
            started.append(r)
        log("started %d authorities and %d relays after %.1f s"
            % (len(auths), len(relays), time.monotonic() - t0))

        state = {"meta": {}, "missing": ors}

        def consensus_complete():
            routers, meta = fetch_consensus(auths)
            if not routers:
                return False
            state["meta"] = meta
            missing = []
            for n in ors:
                flags = routers.get(n.fingerprint, (None, set()))[1]
                if "Running" not in flags or (n.role == "exit" and "Exit" not in flags):
                    missing.append(n)
            state["missing"] = missing
            return not missing

        def consensus_stuck():
            log("no consensus yet with Running (and Exit for exits) for: %s; last valid-after: %s"
                % (", ".join(n.nickname for n in state["missing"]),
                   state["meta"].get("valid-after", "none")))
            return auths[:1] + [n for n in state["missing"] if n.role != "authority"]

        wait_for("a consensus listing every relay as Running", deadline, started,
                 consensus_complete, stuck_nodes=consensus_stuck, interval=0.5)
        log("consensus %s lists all %d relays after %.1f s"
            % (state["meta"].get("valid-after"), len(ors), time.monotonic() - t0))
        for r in relays:  # they backed off after 404s before the first consensus
            r.proc.send_signal(signal.SIGHUP)
        wait_for("every relay to log '%s'" % BOOTSTRAPPED, deadline, started,
                 lambda: all(r.bootstrapped() for r in relays),
                 stuck_nodes=lambda: [r for r in relays if not r.bootstrapped()])
        log("relays bootstrapped after %.1f s" % (time.monotonic() - t0))
        if client:
            start(client, root)
            started.append(client)
            wait_for("the client to log '%s'" % BOOTSTRAPPED, deadline, started,
                     client.bootstrapped, stuck_nodes=lambda: [client])
            log("client bootstrapped after %.1f s" % (time.monotonic() - t0))
        for b in bclients:  # not waited for: its bridge may be one of our own ORs
            start(b, root)
            started.append(b)

        for n in ors:
            desc = fetch_descriptor(auths, n.fingerprint)
            m = re.search(r"^ntor-onion-key (\S+)", desc, re.M)
            e = re.search(r"^master-key-ed25519 (\S+)", desc, re.M)
            if not m:
                raise TornetError("no descriptor with ntor-onion-key for %s (%s)"
                                  % (n.nickname, n.fingerprint))
            n.ntor_onion_key = m.group(1)
            if e and e.group(1).rstrip("=") != n.ed25519:
                raise TornetError("%s: descriptor ed25519 %s != keys file %s"
                                  % (n.nickname, e.group(1), n.ed25519))
        routers, meta = fetch_consensus(auths)
        if meta:
            state["meta"] = meta
        check_alive(started)
    except BaseException as e:
        log("stopping the %d tor processes started" % len(started))
        for n in started:
            if n.proc.poll() is None:
                n.proc.terminate()
        left = stop_pids([n.proc.pid for n in started], root)
        for n in started:
            try:
                n.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if left:
            log("could not stop pids %s" % left)
        if isinstance(e, KeyboardInterrupt):
            raise TornetError("interrupted")
        raise

    net = {
        "dir": root,
        "tor_version": tor_version(),
        "address": LOOPBACK,
        "valid_after": state["meta"].get("valid-after"),
        "fresh_until": state["meta"].get("fresh-until"),
        "valid_until": state["meta"].get("valid-until"),
        "voting_interval": VOTING_INTERVAL,
        "dir_authority_lines": dirauth,
        "authorities": [node_json(a) for a in auths],
        "relays": [node_json(r) for r in relays],
        "client": node_json(client) if client else None,
        "bridge_clients": [node_json(b) for b in bclients],
        "pids": [n.proc.pid for n in started],
        "up_seconds": round(time.monotonic() - t0, 1),
    }
    text = json.dumps(net, indent=2)
    tmp = os.path.join(root, NETWORK_JSON + ".tmp")
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, os.path.join(root, NETWORK_JSON))
    print(text, flush=True)
    # Popen objects are dropped without waiting: the tors keep running, re-parented.
    return 0


def tor_version():
    try:
        out = run([TOR, "--version"], timeout=10)
        return out.splitlines()[0].strip() if out else None
    except TornetError:
        return None


# --------------------------------------------------------------------------- bridge-client


def cmd_bridge_client(args):
    """Add a C tor client that uses one bridge to an already running network."""
    root = os.path.abspath(args.dir)
    path = os.path.join(root, NETWORK_JSON)
    try:
        with open(path) as f:
            net = json.load(f)
    except (OSError, ValueError) as e:
        raise TornetError("cannot read %s: %s (is the network up?)" % (path, e))
    relays = []
    for r in net.get("authorities", []) + net.get("relays", []):
        n = Node(r["nickname"], r["role"], root)
        n.orport, n.fingerprint = r["orport"], r["fingerprint"]
        relays.append(n)
    name, relay, bridge = parse_bridge_spec(args.spec, relays)
    check_nickname(name)
    if relay is not None:
        bridge = "%s:%d %s" % (LOOPBACK, relay.orport, relay.fingerprint)
    taken = [n["nickname"] for n in net.get("authorities", []) + net.get("relays", [])
             + net.get("bridge_clients", []) + ([net["client"]] if net.get("client") else [])]
    if name in taken:
        raise TornetError("nickname %s already used in this network" % name)
    b = Node(name, "bridge-client", root)
    b.bridge = bridge
    b.socksport, b.controlport = allocate_ports(2, args.base_port)
    write_torrc(b, common_lines(b, net["dir_authority_lines"]) + client_lines(b)
                + args.client_torrc_extra)
    start(b, root)
    time.sleep(0.5)
    check_alive([b])
    net.setdefault("bridge_clients", []).append(node_json(b))
    net.setdefault("pids", []).append(b.proc.pid)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(net, indent=2) + "\n")
    os.rename(tmp, path)
    print(json.dumps(node_json(b), indent=2), flush=True)
    return 0


# --------------------------------------------------------------------------- netdesc


def cmd_netdesc(args):
    """Print the network description (onion-core netdesc, format version 1, Tor mode) of a
    running network for an OP (`onion-op --network FILE`): its authorities, and as entries
    the relays named with --entry (default: every non-authority relay), reached over TLS."""
    root = os.path.abspath(args.dir)
    path = os.path.join(root, NETWORK_JSON)
    try:
        with open(path) as f:
            net = json.load(f)
    except (OSError, ValueError) as e:
        raise TornetError("cannot read %s: %s (is the network up?)" % (path, e))
    ors = net.get("authorities", []) + net.get("relays", [])
    wanted = args.entry or [r["nickname"] for r in net.get("relays", [])]
    entries = []
    for nick in wanted:
        r = next((r for r in ors if r["nickname"] == nick), None)
        if r is None:
            raise TornetError("no relay %s in %s" % (nick, path))
        entry = {"nickname": r["nickname"], "tls": "%s:%d" % (LOOPBACK, r["orport"]),
                 "rsa_id": r["fingerprint"], "ntor_key": r["ntor_onion_key"]}
        if r.get("ed25519_identity"):
            entry["ed25519_id"] = r["ed25519_identity"]
        entries.append(entry)
    desc = {
        "version": 1,
        "name": args.name,
        "entries": entries,
        "tor_authorities": [
            {"nickname": a["nickname"], "v3ident": a["v3ident"],
             "address": "%s:%d" % (LOOPBACK, a["dirport"]), "fingerprint": a["fingerprint"]}
            for a in net.get("authorities", [])
        ],
    }
    print(json.dumps(desc, indent=2), flush=True)
    return 0


# --------------------------------------------------------------------------- down


def cmd_down(args):
    root = os.path.abspath(args.dir)
    pids = read_pids(root)
    try:
        with open(os.path.join(root, NETWORK_JSON)) as f:
            pids += [p for p in json.load(f).get("pids", []) if p not in pids]
    except (OSError, ValueError):
        pass
    live = [p for p in pids if proc_matches(p, root)]
    left = stop_pids(live, root)
    if left:
        raise TornetError("pids %s survived SIGKILL" % left)
    try:
        os.remove(os.path.join(root, PIDS))
    except OSError:
        pass
    log("stopped %d tor processes of %s" % (len(live), root))
    return 0


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start a network and return when it is ready")
    up.add_argument("--dir", required=True)
    up.add_argument("--authorities", type=int, default=3)
    up.add_argument("--relays", type=int, default=3, help="non-authority relays, exits included")
    up.add_argument("--exits", type=int, default=2, help="how many of --relays are exits")
    up.add_argument("--client", action="store_true", help="also start a C tor client")
    up.add_argument("--base-port", type=int, default=0, help="first port; 0 = pick free ports")
    up.add_argument("--bridge-client", action="append", default=[],
                    metavar="NAME:ADDR:PORT:FINGERPRINT",
                    help="a C tor client using that bridge (or NAME:RELAYNICK); not waited for")
    up.add_argument("--relay-torrc-extra", action="append", default=[], metavar="LINE",
                    help="torrc line added to every non-authority relay")
    up.add_argument("--authority-torrc-extra", action="append", default=[], metavar="LINE")
    up.add_argument("--client-torrc-extra", action="append", default=[], metavar="LINE")
    up.add_argument("--key-cache", default=DEFAULT_CACHE)
    up.add_argument("--timeout", type=float, default=120)

    down = sub.add_parser("down", help="stop every tor process of the network")
    down.add_argument("--dir", required=True)

    bc = sub.add_parser("bridge-client", help="add a bridge-using C tor client to a running network")
    bc.add_argument("--dir", required=True)
    bc.add_argument("--base-port", type=int, default=0)
    bc.add_argument("--client-torrc-extra", action="append", default=[], metavar="LINE")
    bc.add_argument("spec", metavar="NAME:ADDR:PORT:FINGERPRINT")

    nd = sub.add_parser("netdesc", help="print the network description for an OP (onion-op)")
    nd.add_argument("--dir", required=True)
    nd.add_argument("--entry", action="append", default=[], metavar="NICKNAME",
                    help="an entry OR (default: every non-authority relay)")
    nd.add_argument("--name", default="tornet", help="the network's name")

    args = p.parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return {"up": cmd_up, "down": cmd_down, "bridge-client": cmd_bridge_client,
                "netdesc": cmd_netdesc}[args.cmd](args)
    except TornetError as e:
        log("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
