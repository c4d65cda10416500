"""Refuse outbound network connections in this Python process and every one it starts.

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has
one, and ``PYTHONPATH`` comes first: ``run_tests.sh`` puts this folder there, so the pytest
process, the notebooks' Jupyter kernels, torchrun ranks and any worker they spawn all load it.
With ``MSKSEG_OFFLINE_GUARD=1`` a connection, datagram or name lookup for anything other than
the loopback interface raises ``OSError`` (``ENETUNREACH``) before it leaves the machine, and
is appended, one line each, to the file ``MSKSEG_NET_LOG`` names, so a library that catches
the error and carries on (ultralytics' update checks do) is still caught reaching out.

It imports nothing from the project (it runs before any of it) and only the standard library.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


def _is_loopback(host: object) -> bool:
    """True for 127.0.0.0/8, ::1, localhost names, and Unix-socket paths (not network)."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a host name other than localhost: resolving it is already going out
    return address.is_loopback or (address.version == 6 and address.ipv4_mapped is not None
                                   and address.ipv4_mapped.is_loopback)


def _refuse(what: str, target: object) -> OSError:
    line = f"pid {os.getpid()} {' '.join(sys.argv[:2])[:120]}: {what} {target!r}"
    log = os.environ.get("MSKSEG_NET_LOG")
    if log:
        try:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass
    return OSError(errno.ENETUNREACH, f"mskseg offline guard: outbound network refused ({what} {target!r})")


def _host_of(address: object) -> object:
    return address[0] if isinstance(address, tuple) and address else None


def install() -> None:
    """Patch ``socket`` so only loopback traffic and Unix sockets get through (idempotent)."""
    if getattr(socket, "_mskseg_offline_guard", False):
        return
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo = socket.getaddrinfo

    def _network(sock: socket.socket) -> bool:
        return sock.family in (socket.AF_INET, socket.AF_INET6)

    def guarded_connect(self, address):  # noqa: ANN001
        if _network(self) and not _is_loopback(_host_of(address)):
            raise _refuse("connect", address)
        return connect(self, address)

    def guarded_connect_ex(self, address):  # noqa: ANN001
        if _network(self) and not _is_loopback(_host_of(address)):
            raise _refuse("connect", address)
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):  # noqa: ANN001
        address = args[-1] if args else None
        if _network(self) and not _is_loopback(_host_of(address)):
            raise _refuse("sendto", address)
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        if not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, str(_refuse("resolve", host)))
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.socket.sendto = guarded_sendto
    socket.getaddrinfo = guarded_getaddrinfo
    socket._mskseg_offline_guard = True


if os.environ.get("MSKSEG_OFFLINE_GUARD") == "1":
    install()
