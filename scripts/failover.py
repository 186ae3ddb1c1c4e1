#!/usr/bin/env python3
"""vpclab's live-change benchmark (run by scripts/bench.sh, needs root).

failover: the default lab; a UDP responder on app and standby; a client in `web` sends a probe
to eni-app-float's 10.0.2.50 every 1 ms. At t0 the ENI moves from `app` to `standby`, once with
one command (`apply` of the exported lab with the attachment changed), once with the two AWS
CLI-style verbs a failover script runs (detach, then attach). The outage is t0 to the first reply
from `standby`. Target: under 50 ms.

bigchange: a lab of 200 ENIs (50 instances) in groups holding 1,000 rules, a UDP flow between two
instances probed every 1 ms, and one rule authorized while it runs: the time the change takes,
how long forwarding paused for the swap, and how many probes of the established flow were lost
(target: none).

biglab: issue 10's lab size, 500 instances with one ENI each: how long `up` and `down` take
(targets: under 10 s and under 5 s).

drill: the README's failover walkthrough (an ENI, a floating IP, an Elastic IP), probes every
10 ms, printing each command, the outage seen by the probe, and `vpclab events`.

Usage: failover.py VPCLAB_BINARY [failover|bigchange|biglab|drill]...
"""

import os
import re
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1]
PROBE_PORT = 7000

RESPONDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Bound to the service address (replies must leave from it, by its ENI's table); IP_FREEBIND
# lets the standby bind it before the address arrives.
s.setsockopt(socket.SOL_IP, 15, 1)
s.bind((sys.argv[2], %d))
name = sys.argv[1].encode()
while True:
    data, peer = s.recvfrom(64)
    s.sendto(data[:8] + name, peer)
""" % PROBE_PORT

# Sends a probe every 1 ms for `secs`; prints "seq send_time recv_time responder" per reply, and
# "sent N" at the end. Times are CLOCK_MONOTONIC, shared by every namespace.
CLIENT = r"""
import socket, struct, sys, time, select
dst, secs, gap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = {}
seq = 0
end = time.monotonic() + secs
nxt = time.monotonic()
out = []
while time.monotonic() < end:
    now = time.monotonic()
    if now >= nxt:
        s.sendto(struct.pack("!Q", seq), (dst, %d))
        sent[seq] = now
        seq += 1
        nxt += gap
    r, _, _ = select.select([s], [], [], max(0.0, nxt - time.monotonic()))
    while r:
        try:
            data = s.recv(64)
        except BlockingIOError:
            break
        t = time.monotonic()
        q = struct.unpack("!Q", data[:8])[0]
        out.append("%%d %%.6f %%.6f %%s" %% (q, sent.get(q, 0), t, data[8:].decode()))
print("\n".join(out))
print("sent %%d" %% seq)
""" % PROBE_PORT


def vpclab(*args, check=True):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"vpclab {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r


def in_ns(lab, inst, *cmd, **kw):
    return subprocess.Popen(["ip", "netns", "exec", f"{lab}-{inst}", *cmd], **kw)


def run_client(lab, inst, dst, secs, gap=0.001):
    return in_ns(lab, inst, "python3", "-c", CLIENT, dst, str(secs), str(gap), stdout=subprocess.PIPE, text=True)


def parse_client(text):
    replies, sent = [], 0
    for line in text.splitlines():
        if line.startswith("sent "):
            sent = int(line.split()[1])
        elif line:
            q, ts, tr, who = line.split()
            replies.append((int(q), float(ts), float(tr), who))
    return replies, sent


def wait_for_replies(lab, inst, dst, who):
    """Waits until `who` answers probes to dst (the lab has settled)."""
    for _ in range(50):
        c = run_client(lab, inst, dst, 0.1)
        replies, _ = parse_client(c.communicate()[0])
        if any(r[3] == who for r in replies):
            return
    raise SystemExit(f"failover: no reply from {who} at {dst}")


def moved_file(lab):
    """The running lab exported, with eni-app-float attached to standby instead of app."""
    text = vpclab("export", lab).stdout
    head, block = text.split('id = "eni-app-float"', 1)
    block = block.replace('instance = "app", device_index = 1', 'instance = "standby", device_index = 1', 1)
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write(head + 'id = "eni-app-float"' + block)
    f.close()
    return f.name


def one_failover(lab, how):
    """Moves eni-app-float from app to standby under probes every 1 ms; returns the row."""
    path = moved_file(lab) if how == "apply" else None
    wait_for_replies(lab, "web", "10.0.2.50", "app")
    client = run_client(lab, "web", "10.0.2.50", 1.5)
    time.sleep(0.5)
    t0 = time.monotonic()
    if how == "apply":
        vpclab("apply", "--lab", lab, path)
    else:
        vpclab("detach-network-interface", "--lab", lab, "--network-interface-id", "eni-app-float")
        vpclab("attach-network-interface", "--lab", lab, "--network-interface-id", "eni-app-float",
               "--instance-id", "standby", "--device-index", "1")
    t1 = time.monotonic()
    if path:
        os.unlink(path)
    replies, sent = parse_client(client.communicate()[0])
    last_app = max((r[2] for r in replies if r[3] == "app"), default=t0)
    first_standby = min((r[2] for r in replies if r[3] == "standby"), default=None)
    if first_standby is None:
        raise SystemExit("failover: standby never answered")
    return (f"outage_ms={(first_standby - t0) * 1000:.1f} command_ms={(t1 - t0) * 1000:.1f} "
            f"last_app_reply_at_t0{(last_app - t0) * 1000:+.1f}ms probes_lost={sent - len(replies)} of {sent}")


def failover():
    lab = f"fo{os.getpid()}"
    vpclab("up", "--name", lab)
    procs = []
    try:
        for inst in ("app", "standby"):
            procs.append(in_ns(lab, inst, "python3", "-c", RESPONDER, inst, "10.0.2.50"))
        # sg-app admits the probes (itself a live change).
        vpclab("authorize-security-group-ingress", "--lab", lab, "--group-id", "sg-app", "--protocol", "udp",
               "--port", str(PROBE_PORT), "--cidr", "10.0.0.0/16")
        row = one_failover(lab, "apply")
        print(f"failover   apply (one change) {row} (target: outage under 50 ms)")
        # Back to app, then the way a failover script does it: two commands.
        vpclab("detach-network-interface", "--lab", lab, "--network-interface-id", "eni-app-float")
        vpclab("attach-network-interface", "--lab", lab, "--network-interface-id", "eni-app-float",
               "--instance-id", "app", "--device-index", "1")
        row = one_failover(lab, "verbs")
        print(f"failover   detach + attach    {row}")
    finally:
        for p in procs:
            p.kill()
        vpclab("down", lab, check=False)


def big_topology(lab):
    lines = [f'name = "{lab}"', '[[vpc]]', 'id = "vpc-big"', 'cidr = "10.0.0.0/16"']
    for s in range(4):
        lines += ['[[subnet]]', f'id = "subnet-{s}"', 'vpc = "vpc-big"', f'cidr = "10.0.{s}.0/24"']
    for g in range(20):
        rules = ", ".join(
            f'{{ protocol = "tcp", ports = "{1000 + g * 50 + r}", source = "10.{g}.{r}.0/24" }}' for r in range(50))
        lines += ['[[security_group]]', f'id = "sg-{g}"', 'vpc = "vpc-big"', f'ingress = [{rules}]']
    # The probe flow: UDP from anywhere in the VPC.
    lines += ['[[security_group]]', 'id = "sg-probe"', 'vpc = "vpc-big"',
              'ingress = [{ protocol = "udp", ports = "7000", source = "10.0.0.0/16" }]']
    for i in range(50):
        lines += ['[[instance]]', f'id = "i{i}"']
        for d in range(4):
            n = i * 4 + d
            groups = ", ".join(f'"sg-{(n + k) % 20}"' for k in range(4)) + ', "sg-probe"'
            lines += ['[[network_interface]]', f'id = "eni-{n}"', f'subnet = "subnet-{d}"',
                      f'private_ip = "10.0.{d}.{10 + i}"', f'security_groups = [{groups}]',
                      f'attachment = {{ instance = "i{i}", device_index = {d} }}']
    return "\n".join(lines) + "\n"


def bigchange():
    lab = f"big{os.getpid()}"
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(big_topology(lab))
        path = f.name
    t = time.monotonic()
    vpclab("up", path)
    up_ms = (time.monotonic() - t) * 1000
    procs = []
    try:
        procs.append(in_ns(lab, "i1", "python3", "-c", RESPONDER, "i1", "10.0.0.11"))
        wait_for_replies(lab, "i0", "10.0.0.11", "i1")
        client = run_client(lab, "i0", "10.0.0.11", 1.5)
        time.sleep(0.5)
        r = vpclab("authorize-security-group-ingress", "--lab", lab, "--group-id", "sg-0", "--protocol", "tcp",
                   "--port", "22", "--cidr", "10.0.0.0/16")
        m = re.search(r"generation \d+ in (\d+) ms \(forwarding paused (\d+) us\)", r.stdout)
        replies, sent = parse_client(client.communicate()[0])
        lost = sent - len(replies)
        print(f"bigchange  enis=200 rules=1000 up_ms={up_ms:.0f} apply_ms={m.group(1) if m else '?'} "
              f"swap_pause_us={m.group(2) if m else '?'} established_probes_lost={lost} of {sent} (target: 0)")
    finally:
        for p in procs:
            p.kill()
        vpclab("down", lab, check=False)
        os.unlink(path)


def biglab():
    """Issue 10's lab size: 500 instances with one ENI each, brought up and taken down."""
    lab = f"many{os.getpid()}"
    lines = [f'name = "{lab}"', '[[vpc]]', 'id = "vpc-many"', 'cidr = "10.0.0.0/16"']
    for s in range(4):
        lines += ['[[subnet]]', f'id = "subnet-{s}"', 'vpc = "vpc-many"', f'cidr = "10.0.{s}.0/24"']
    for i in range(500):
        s, host = divmod(i, 125)
        lines += ['[[instance]]', f'id = "i{i}"', '[[network_interface]]', f'id = "eni-{i}"',
                  f'subnet = "subnet-{s}"', f'private_ip = "10.0.{s}.{10 + host}"',
                  f'attachment = {{ instance = "i{i}", device_index = 0 }}']
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        t = time.monotonic()
        vpclab("up", path)
        up_ms = (time.monotonic() - t) * 1000
        t = time.monotonic()
        vpclab("down", lab)
        down_ms = (time.monotonic() - t) * 1000
        print(f"biglab     instances=500 up_ms={up_ms:.0f} down_ms={down_ms:.0f} (target: up under 10 s, down under 5 s)")
    finally:
        vpclab("down", lab, check=False)
        os.unlink(path)


def shown(*args):
    """Runs a vpclab command as the README shows it, printing command and output."""
    print("$ vpclab " + " ".join(a for a in args if not a.startswith("--lab=")))
    r = vpclab(*args)
    print(r.stdout, end="")
    return r


def outage(replies, old, new, t0):
    last_old = max((r[2] for r in replies if r[3] == old), default=t0)
    first_new = min((r[2] for r in replies if r[3] == new), default=None)
    if first_new is None:
        raise SystemExit(f"drill: {new} never answered")
    gap = (first_new - last_old) * 1000
    print(f"probe: last reply from {old} at t0{(last_old - t0) * 1000:+.0f} ms, first from {new} at "
          f"t0+{(first_new - t0) * 1000:.0f} ms: {gap:.0f} ms without an answer")


def drill():
    """The README's failover walkthrough on the default lab, probes every 10 ms."""
    lab = f"drill{os.getpid()}"
    vpclab("up", "--name", lab)
    L = f"--lab={lab}"
    procs = []
    try:
        print("# 1. An ENI moves: app fails, eni-app-float (10.0.2.50) goes to standby")
        shown("authorize-security-group-ingress", L, "--group-id", "sg-app", "--protocol", "udp", "--port", "7000",
              "--cidr", "10.0.0.0/16")
        for inst in ("app", "standby"):
            procs.append(in_ns(lab, inst, "python3", "-c", RESPONDER, inst, "10.0.2.50"))
        wait_for_replies(lab, "web", "10.0.2.50", "app")
        client = run_client(lab, "web", "10.0.2.50", 1.5, 0.01)
        time.sleep(0.3)
        t0 = time.monotonic()
        shown("stop-instances", L, "--instance-ids", "app")
        shown("detach-network-interface", L, "--network-interface-id", "eni-app-float")
        shown("attach-network-interface", L, "--network-interface-id", "eni-app-float", "--instance-id", "standby",
              "--device-index", "1")
        outage(parse_client(client.communicate()[0])[0], "app", "standby", t0)

        print("# 2. A floating secondary IP (10.0.2.51) moves from app to standby")
        shown("start-instances", L, "--instance-ids", "app")
        shown("assign-private-ip-addresses", L, "--network-interface-id", "eni-app", "--private-ip-addresses",
              "10.0.2.51")
        for inst in ("app", "standby"):
            procs.append(in_ns(lab, inst, "python3", "-c", RESPONDER, inst, "10.0.2.51"))
        wait_for_replies(lab, "web", "10.0.2.51", "app")
        client = run_client(lab, "web", "10.0.2.51", 1.0, 0.01)
        time.sleep(0.3)
        t0 = time.monotonic()
        shown("assign-private-ip-addresses", L, "--network-interface-id", "eni-standby", "--private-ip-addresses",
              "10.0.2.51", "--allow-reassignment")
        outage(parse_client(client.communicate()[0])[0], "app", "standby", t0)

        print("# 3. An Elastic IP (203.0.113.20) moves from web to web2, added with `apply`")
        exported = vpclab("export", lab).stdout
        extra = ('\n[[instance]]\nid = "web2"\n\n[[network_interface]]\nid = "eni-web2"\n'
                 'subnet = "subnet-public"\nprivate_ip = "10.0.1.20"\nsecurity_groups = ["sg-web"]\n'
                 'attachment = { instance = "web2", device_index = 0 }\n')
        head, tail = exported.split("[internet]")
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(head + extra + "\n[internet]" + tail)
            path = f.name
        print("$ vpclab apply lab-with-web2.toml")
        print(vpclab("apply", L, path).stdout, end="")
        os.unlink(path)
        shown("authorize-security-group-ingress", L, "--group-id", "sg-web", "--protocol", "udp", "--port", "7000",
              "--cidr", "0.0.0.0/0")
        procs.append(in_ns(lab, "web", "python3", "-c", RESPONDER, "web", "10.0.1.10"))
        procs.append(in_ns(lab, "web2", "python3", "-c", RESPONDER, "web2", "10.0.1.20"))
        wait_for_replies(lab, "internet", "203.0.113.20", "web")
        client = run_client(lab, "internet", "203.0.113.20", 1.0, 0.01)
        time.sleep(0.3)
        t0 = time.monotonic()
        shown("associate-address", L, "--allocation-id", "eipalloc-web", "--network-interface-id", "eni-web2")
        outage(parse_client(client.communicate()[0])[0], "web", "web2", t0)
        print("$ vpclab events")
        print(vpclab("events", L).stdout, end="")
    finally:
        for p in procs:
            p.kill()
        vpclab("down", lab, check=False)


if __name__ == "__main__":
    for what in sys.argv[2:] or ["failover", "bigchange", "biglab"]:
        {"failover": failover, "bigchange": bigchange, "biglab": biglab, "drill": drill}[what]()
