#!/usr/bin/env python3
"""Medians of bench/forward/run.sh raw.csv as a markdown table with ratios to HAProxy."""
import csv, statistics, sys
from collections import defaultdict

HZ = 100  # USER_HZ: /proc stat ticks per second
vals = defaultdict(list)   # (relay, test) -> values
byround = defaultdict(dict)  # (test, rep[.round]) -> relay -> value
cpu = defaultdict(list)    # (relay, test) -> cpu per unit
wrong = defaultdict(int)
order = []
for rep, relay, test, v, unit, ticks in csv.reader(open(sys.argv[1])):
    if relay not in order:
        order.append(relay)
    f = v.split()
    if not f or f[0] in ("", "NA"):
        continue
    rate, count = float(f[0]), float(f[1]) if len(f) > 1 else 0
    vals[relay, test].append(rate)
    byround[test, rep][relay] = rate
    secs = int(ticks) / HZ
    if relay != "direct" and count > 0:
        if test.startswith("tcp"):
            cpu[relay, test].append(secs / (count / 1e9))       # s per GB
        else:
            cpu[relay, test].append(secs / count * 1e6)         # us per op
    if test.startswith("udp") and len(f) > 2:
        wrong[relay] += int(f[2])

def med(x):
    return statistics.median(x) if x else None

def fmt(x, d=1):
    return "-" if x is None else f"{x:,.{d}f}"

def ratio(relay, test, base="haproxy"):
    a, b = med(vals[relay, test]), med(vals[base, test])
    if a is None or not b:
        return ""
    return f" ({a / b:.2f}x)"

main_tests = any(t != "sni" for (_, t) in vals)
if main_tests:
    print("| relay | 1-stream Gbit/s | 8-stream Gbit/s | CPU s/GB (1 stream) | conns/s sequential | CPU us/conn | UDP req/s | CPU us/req | UDP req/s, 8 clients | CPU us/req | wrong replies |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in order:
        print(f"| {r} | {fmt(med(vals[r,'tcp1']),2)}{ratio(r,'tcp1')} | {fmt(med(vals[r,'tcp8']),2)}{ratio(r,'tcp8')} "
              f"| {fmt(med(cpu[r,'tcp1']),2)} | {fmt(med(vals[r,'conn1']),0)}{ratio(r,'conn1')} | {fmt(med(cpu[r,'conn1']),0)} "
              f"| {fmt(med(vals[r,'udprr']),0)}{ratio(r,'udprr','nginx')} | {fmt(med(cpu[r,'udprr']),0)} "
              f"| {fmt(med(vals[r,'udp8']),0)}{ratio(r,'udp8','nginx')} | {fmt(med(cpu[r,'udp8']),0)} "
              f"| {wrong[r] if (r,'udprr') in vals or (r,'udp8') in vals else '-'} |")
    print()
    print("Ratios in brackets: TCP columns against haproxy, UDP req/s against nginx (HAProxy has no UDP).")

def rounds(test, anchors, who="portolan"):
    """portolan against the best anchor of each round, where all ran."""
    r = []
    for (t, _), got in byround.items():
        if t == test and who in got and all(a in got for a in anchors):
            r.append(got[who] / max(got[a] for a in anchors))
    if not r:
        return
    ahead = sum(1 for x in r if x >= 1)
    print(f"- {test}: {who} against the best of {', '.join(anchors)} in the same round: "
          f"median {statistics.median(r):.2f}x, {min(r):.2f}-{max(r):.2f}x over {len(r)} rounds, "
          f"at least level in {ahead}.")

print()
rounds("conn1", [a for a in ("haproxy", "nginx", "rinetd") if (a, "conn1") in vals])
rounds("udprr", ["nginx"])

# SNI routing (run.sh runs it before the rest; SNI_ONLY=1 runs only it).
sni_relays = [r for r in order if (r, "sni") in vals]
if sni_relays:
    print()
    print("SNI routing: TLS connections per second (full handshake, 64 B echo, close; server names")
    print("cycling over an exact match, a wildcard match and the default route), relays taking turns;")
    print("ratios against nginx ssl_preread. direct goes to the default backend, unrouted.")
    print()
    print("| relay | TLS conns/s | CPU us/conn |")
    print("| --- | --- | --- |")
    for r in sni_relays:
        print(f"| {r} | {fmt(med(vals[r,'sni']),0)}{ratio(r,'sni','nginx')} | {fmt(med(cpu[r,'sni']),0)} |")
    print()
    rounds("sni", ["nginx"])

# The targets of the forwarding issues, from the medians above, and where
# the machine bounds them: on loopback the load generator and the relay
# share the CPUs, so with every CPU busy a relay's throughput is bounded by
# the relay-free path (direct) whatever its own cost.
def target(name, got, want, ok):
    print(f"- {name}: {got} (target {want}): {'met' if ok else 'MISSED'}")

if main_tests and ("portolan", "tcp1") in vals:
    print()
    print("Targets (medians of this run):")
    p, h = med(vals["portolan", "tcp1"]), med(vals["haproxy", "tcp1"])
    pc, hc = med(cpu["portolan", "tcp1"]), med(cpu["haproxy", "tcp1"])
    if h and hc:
        target("1 stream against haproxy", f"{p / h:.2f}x", ">= 1.30x", p / h >= 1.3)
        target("CPU per GB against haproxy", f"{pc / hc:.2f}x", "<= 0.50x", pc / hc <= 0.5)
    d = med(vals["direct", "tcp1"])
    if d:
        shares = ", ".join(f"{r} {med(vals[r, 'tcp1']) / d:.0%}" for r in order
                           if r != "direct" and (r, "tcp1") in vals)
        print(f"  (1 stream without a relay: {d:.2f} Gbit/s; each relay's share of it: {shares})")
    c, cc = med(vals["portolan", "conn1"]), [med(vals[a, "conn1"]) for a in ("haproxy", "nginx") if (a, "conn1") in vals]
    if c and cc:
        target("short connections against the best anchor", f"{c / max(cc):.2f}x at {med(cpu['portolan', 'conn1']):.0f} us",
               ">= 1.00x at <= 250 us", c >= max(cc) and med(cpu["portolan", "conn1"]) <= 250)
    u, n = med(vals["portolan", "udprr"]), med(vals["nginx", "udprr"])
    if u and n:
        target("UDP exchanges, one socket, against nginx", f"{u / n:.2f}x", ">= 1.00x", u >= n)
