#!/usr/bin/env python3
"""Opens N keep-alive mTLS connections to a keep server, sends one request on each, holds them
idle and prints the server's resident memory before, while held, and after they close.

    idle_conns.py --port P --cert agent.crt --key agent.key --ca root_ca.crt --pid PID [--n 1000]

A benchmark helper (bench/server/conn_memory.sh runs it), standard library only."""
import argparse
import resource
import socket
import ssl
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--path", default="/v1/sys/health")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["http/1.1"])
    time.sleep(1)
    before = rss_kb(a.pid)
    conns = []
    request = f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    for i in range(a.n):
        s = socket.create_connection(("127.0.0.1", a.port))
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(request)
        head = t.recv(65536)
        if not head.startswith(b"HTTP/1.1 "):
            sys.exit(f"connection {i}: unexpected answer {head[:80]!r}")
        conns.append(t)
    time.sleep(2)
    held = rss_kb(a.pid)
    for t in conns:
        t.close()
    time.sleep(3)
    after = rss_kb(a.pid)
    per = (held - before) / max(1, a.n)
    print(f"connections {a.n}: server RSS {before / 1024:.1f} MiB idle, "
          f"{held / 1024:.1f} MiB with them open ({per:.1f} KiB each), "
          f"{after / 1024:.1f} MiB after they closed")


if __name__ == "__main__":
    main()
