"""sd_notify without a dependency: one datagram to $NOTIFY_SOCKET per state change.

The unit is Type=notify so that systemd counts the daemon started only once the store is migrated, the
rules are loaded and the HTTP port is bound (READY=1), and WatchdogSec restarts it when the main loop
stops turning (WATCHDOG=1 is sent from that loop, not from a side thread that would outlive a hang).
Outside systemd NOTIFY_SOCKET is unset and every call is a no-op.
"""
from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not run under systemd or on failure."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of systemd's WatchdogSec, or None when none is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.5)
    except ValueError:
        return None
