"""The container's TCP sockets (``/proc/net/tcp`` and ``tcp6``, read inside its network namespace) and the reverse
shell's own connection among them.

The text is the attacker's to shape (it comes out of the compromised container), so parsing is strict: a line that is
not a well-formed socket entry is skipped and counted, never interpreted, and at most :data:`MAX_SOCKETS` are kept for
the report (the connection is looked for among all of them; the exec's byte cap bounds the text).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from responder.intake.findings import Endpoint

# `cat` of both files: read-only, no shell, the exact argv the admission guard allows (beside `ps axjf`).
SOCKETS_ARGV = ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
MAX_SOCKETS = 512
# include/net/tcp_states.h
STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
_ENTRY = re.compile(r"\s*\d+:\s+([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+"
                    r"([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})\s+([0-9A-Fa-f]{2})\s")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Socket:
    """One TCP socket: addresses as text (IPv4-mapped IPv6 shown as IPv4), the kernel's state name."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str

    def as_dict(self) -> dict[str, str | int]:
        return {
            "local": f"{_host(self.local_ip)}:{self.local_port}",
            "remote": f"{_host(self.remote_ip)}:{self.remote_port}",
            "state": self.state,
        }


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _address(hex_text: str) -> str:
    # The kernel prints each 32-bit word in host byte order (little-endian here), most significant word first.
    raw = bytes.fromhex(hex_text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@dataclass(frozen=True, slots=True)
class Table:
    """One read of the socket files: the first :data:`MAX_SOCKETS` entries (what the report lists), how many
    well-formed entries there were in all, and how many lines were neither a header nor an entry."""

    sockets: list[Socket]
    entries: int
    odd: int


def _scan(text: str) -> Iterator[Socket | None]:
    """Each socket entry in ``text``, in order; None for a line that is neither a header nor an entry."""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("sl "):
            continue
        match = _ENTRY.match(line)
        if match is None:
            yield None
            continue
        local, lport, remote, rport, state = match.groups()
        yield Socket(
            local_ip=_address(local),
            local_port=int(lport, 16),
            remote_ip=_address(remote),
            remote_port=int(rport, 16),
            state=STATES.get(int(state, 16), f"0x{state.upper()}"),
        )


def every_socket(text: str) -> Iterator[Socket]:
    """Every well-formed entry, lazily: the connection is looked for among all of them, not only the ones kept
    (filler entries ahead of the real one must not hide it)."""
    return (s for s in _scan(text) if s is not None)


def parse(text: str) -> Table:
    """The table as the report keeps it (at most :data:`MAX_SOCKETS` sockets), with its counts."""
    kept: list[Socket] = []
    entries = odd = 0
    for found in _scan(text):
        if found is None:
            odd += 1
            continue
        entries += 1
        if len(kept) < MAX_SOCKETS:
            kept.append(found)
    return Table(sockets=kept, entries=entries, odd=odd)


def _same(ip: str, port: int, endpoint: Endpoint | None) -> bool:
    if endpoint is None:
        return True
    if ipaddress.ip_address(ip) != ipaddress.ip_address(endpoint.ip):
        return False
    return endpoint.port is None or endpoint.port == port


def the_connection(
    sockets: Iterable[Socket], remote: Endpoint | None, local: Endpoint | None, incomplete: str | None = None
) -> dict[str, object]:
    """Whether the finding's connection (its Dst as the remote end, its Src as the local end) was among the sockets,
    and in which state. The finding's addresses were validated at intake; without a Dst IP nothing can be matched.

    ``incomplete``: why ``sockets`` may not be the container's whole table (truncated, the command failed, not read
    at all). A socket found is found either way; an absence, or a connection seen only in a closing state, is then
    ``unknown`` (``open`` None), never a negative the table could not show."""
    if remote is None:
        return {"matched": False, "open": None, "why": "the finding names no remote address to match"}
    wanted = f"{_host(remote.ip)}:{remote.port if remote.port is not None else '*'}"
    first: Socket | None = None
    seen = 0
    for s in sockets:
        seen += 1
        if s.state == "LISTEN" or not _same(s.remote_ip, s.remote_port, remote):
            continue
        if not _same(s.local_ip, s.local_port, local):
            continue
        first = first or s
        if s.state == "ESTABLISHED":
            first = s
            break
    if first is None:
        if incomplete is None:
            why = f"no socket of the container was connected to {wanted} at capture time"
        elif seen:
            why = f"unknown: none of the {seen} sockets read was connected to {wanted}, but {incomplete}"
        else:
            why = f"unknown: {incomplete}"
        return {"matched": False, "open": False if incomplete is None else None, "remote": wanted, "why": why}
    shown = first.as_dict()
    is_open = first.state == "ESTABLISHED"
    why = f"the reverse shell's connection {shown['local']} -> {shown['remote']} was " + (
        "still open (ESTABLISHED) at capture time" if is_open else f"in state {first.state} at capture time"
    )
    if not is_open and incomplete is not None:
        why += f"; whether another socket to {wanted} was still open is unknown: {incomplete}"
    return {
        "matched": True,
        "open": is_open if is_open or incomplete is None else None,
        "remote": wanted,
        "socket": shown,
        "why": why,
    }
