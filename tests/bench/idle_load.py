#!/usr/bin/env python3
"""Hostile load for gridd (issue 7, load): idle connections that never send
a byte, and slow-drip clients that announce a Hello frame and then send it
one byte every few hundred milliseconds. Idle connections are opened once
and never reopened; a drip client that gridd drops connects again at its
next tick (a persistent slow-loris). One thread, one epoll set; source
addresses spread over 127.20.x.y so that 16K connects stay cheap.

Usage: idle_load.py --port P [--idle N] [--drip M] [--interval-ms MS]
Prints "ready idle=N drip=M" once every connection is open, "settled
idle_open=I drip_open=D" once every connect completed and gridd has closed
no idle connection for 300 ms (it has accepted them all and dropped those
over its caps), then runs until
SIGTERM or SIGINT and prints, as its last line:
idle_load idle=N idle_dropped=D drip=M drip_dropped=K drip_bytes=B
(dropped: closed by gridd, with or without an Error first).
"""
import argparse
import errno
import select
import signal
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24
SPREAD = 128  # connections per source address
DRIP_FRAME = 200  # the Hello length a drip client announces


class Load:
    def __init__(self, port, base=20):
        self.port, self.base = port, base
        self.ep = select.epoll()
        self.socks = {}  # fd -> (socket, kind)
        self.next_src = 0
        self.idle_dropped = self.drip_dropped = self.drip_bytes = 0
        self.last_idle_drop = time.monotonic()
        self.drips = {}  # fd -> bytes sent so far
        self.connecting = set()  # fds whose connect has not completed (a full accept queue)
        self.born = {}  # fd -> when it connected
        self.longest = 0.0  # the longest life of a connection gridd closed (s)
        self.drip_wanted = 0

    def _connect(self, kind):
        i = self.next_src
        self.next_src += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        n = i // SPREAD
        s.bind(("127.%d.%d.%d" % (self.base, n // 250, 1 + n % 250), 0))
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", self.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            raise OSError(rc, "connect to gridd: " + errno.errorcode.get(rc, str(rc)))
        self.socks[s.fileno()] = (s, kind)
        self.connecting.add(s.fileno())
        self.born[s.fileno()] = time.monotonic()
        self.ep.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP)
        if kind == "drip":
            self.drips[s.fileno()] = 0
        return s

    def open(self, idle, drip):
        for _ in range(idle):
            self._connect("idle")
        self.drip_wanted = drip
        for _ in range(drip):
            self._connect("drip")

    def open_count(self, kind):
        return sum(1 for _, k in self.socks.values() if k == kind)

    def _drop(self, fd):
        s, kind = self.socks.pop(fd)
        self.ep.unregister(fd)
        self.drips.pop(fd, None)
        self.connecting.discard(fd)
        self.longest = max(self.longest, time.monotonic() - self.born.pop(fd))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        if kind == "idle":
            self.idle_dropped += 1
            self.last_idle_drop = time.monotonic()
        else:
            self.drip_dropped += 1

    def poll(self, timeout):
        """Notices connections gridd closed (an Error and EOF, or a reset)."""
        for fd, ev in self.ep.poll(timeout):
            if fd not in self.socks:
                continue
            s = self.socks[fd][0]
            if fd in self.connecting and ev & select.EPOLLOUT:
                self.connecting.discard(fd)
                self.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
            if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLERR):
                continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or ev & (select.EPOLLHUP | select.EPOLLRDHUP):
                self._drop(fd)

    def drip(self):
        """One byte on every drip connection (the frame header first), and
        new drip connections for those gridd dropped."""
        for fd in list(self.drips):
            s = self.socks[fd][0]
            sent = self.drips[fd]
            msg = struct.pack(">I", DRIP_FRAME) + b"\x08" * DRIP_FRAME
            try:
                self.drip_bytes += s.send(msg[sent:sent + 1])
                self.drips[fd] = sent + 1
            except OSError:
                self._drop(fd)
        for _ in range(self.drip_wanted - len(self.drips)):
            try:
                self._connect("drip")
            except OSError:
                break

    def run(self, interval, stop):
        next_drip = time.monotonic()
        settled = False
        self.last_idle_drop = time.monotonic()
        while not stop():
            now = time.monotonic()
            if not settled and not self.connecting and now - self.last_idle_drop > 0.3:
                settled = True
                print("settled idle_open=%d drip_open=%d" %
                      (self.open_count("idle"), self.open_count("drip")), flush=True)
            if now >= next_drip:
                self.drip()
                next_drip = now + interval
            self.poll(max(0.0, min(next_drip - time.monotonic(), 0.05)))

    def close(self):
        for fd in list(self.socks):
            s = self.socks.pop(fd)[0]
            self.born.pop(fd, None)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.ep.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--idle", type=int, default=16384)
    ap.add_argument("--drip", type=int, default=256)
    ap.add_argument("--interval-ms", type=float, default=300)
    args = ap.parse_args()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    load = Load(args.port)
    try:
        load.open(args.idle, args.drip)
    except OSError as e:
        print("idle_load.py: %s (raise the open-file limit with ulimit -n, or use fewer)" % e,
              file=sys.stderr)
        return 1
    print("ready idle=%d drip=%d" % (args.idle, args.drip), flush=True)
    load.run(args.interval_ms / 1000.0, lambda: bool(stopping))
    print("idle_load idle=%d idle_dropped=%d drip=%d drip_dropped=%d drip_bytes=%d" %
          (args.idle, load.idle_dropped, args.drip, load.drip_dropped, load.drip_bytes), flush=True)
    load.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
