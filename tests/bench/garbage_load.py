#!/usr/bin/env python3
"""Hostile load for gridd (issue 18.5): connections that send one undecodable
frame and then stay open, reconnecting as soon as gridd closes them, so that
N of them are always knocking. Before issue 18 each refused connection
lingered 2 s outside --max-pending, and two such processes held 16.6K of
gridd's connections. One thread, one epoll set; source addresses spread
over 127.30.x.y.

Usage: garbage_load.py --port P [--conns N] [--seconds S]
Last line: garbage_load conns=N connects=C refused=R open_at_end=O"""
import argparse
import errno
import select
import socket
import struct
import time

IP_BIND_ADDRESS_NO_PORT = 24
SPREAD = 128
GARBAGE = struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=8192)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    ep = select.epoll()
    socks = {}
    stats = {"connects": 0, "refused": 0}

    def open_one(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind(("127.30.%d.%d" % (i // SPREAD // 250, i // SPREAD % 250 + 1), 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", a.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return
        socks[s.fileno()] = (s, i, False)
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
        stats["connects"] += 1

    for i in range(a.conns):
        open_one(i)
    end = time.time() + a.seconds
    while time.time() < end:
        for fd, ev in ep.poll(0.1):
            s, i, sent = socks[fd]
            if ev & select.EPOLLOUT and not sent:
                try:
                    s.send(GARBAGE)
                except OSError:
                    pass
                socks[fd] = (s, i, True)
                ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                continue
            if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = s.recv(4096)
                except OSError as e:
                    data = b"" if e.errno != errno.EAGAIN else None
                if data is None:
                    continue
                if data == b"" or ev & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                    ep.unregister(fd)
                    del socks[fd]
                    s.close()
                    stats["refused"] += 1
                    open_one(i)  # knock again at once
    print("garbage_load conns=%d connects=%d refused=%d open_at_end=%d" %
          (a.conns, stats["connects"], stats["refused"], len(socks)), flush=True)


if __name__ == "__main__":
    main()
