"""Idle cost of the always-on clients: RSS and CPU of ``iotnotify listen`` and ``tray``.

Starts ``iotnotify local`` (or uses a running one with ``--state-file``),
then runs each client as a user would, as its own process: ``iotnotify
listen --user alice`` and ``iotnotify tray --user alice`` (the tray under a
private Xvfb with a stand-in system-tray manager that owns
``_NET_SYSTEM_TRAY_S0``, on a private session D-Bus with a stand-in
notification daemon, ``notification_host.py``; keyring backend
``keyring.backends.null`` since there is no Secret Service). Each is
measured once it says "caught-up" on stderr, for ``--seconds`` (60 by
default) with nothing sent. Then one notification is sent to the tray; once
its pop-up has reached the notification daemon (jeepney and the pop-up
thread are loaded by then), the tray is measured idle again for
``--seconds``: the "after a pop-up" row. Linux only: figures come from
``/proc``.

Then (unless ``--only`` says otherwise) the TLS rows: the cost the local
stack's plain ``ws://`` hides. A second stack runs with ``--tls`` (it vends
``wss://``) and ``iotnotify listen`` connects with *no* ``--ca-file`` (a copy
of the state file with ``caFile`` empty), so it trusts the system store
exactly as against AWS, through ``iotnotify.tls``. The stack's generated CA
is added to the system's CAs in both ways the SDK can load them:
``capath`` (a temporary hashed directory with a link per system CA plus one
for the stack's CA, named by ``SSL_CERT_DIR``: OpenSSL's on-demand lookup,
what the SDK uses on Debian/Ubuntu) and ``bundle`` (the system bundle plus
the stack's CA in one file named by ``SSL_CERT_FILE``: every certificate
parsed, what the SDK did before and still does where there is no hashed
directory). The tray runs the same way with ``capath`` (idle, then after a
pop-up).

Printed per client: RSS at the end of the window (MiB; target <= 30,
issue 11 §2), CPU time used in the window, in nanoseconds from the
scheduler (``/proc/PID/task/*/schedstat``, first field: time on a CPU, summed
over the threads alive at the end of the window; a thread that ended inside
it is not counted) and in clock ticks (``/proc/PID/stat``, 10 ms units), and
context switches per hour over all its threads (the kernel's count of
wake-ups). "Idle" means no work beyond the keepalive: at most
``PING_BUDGET_MS`` of CPU per PINGREQ/PINGRESP round the window can hold (one
per keepalive interval, plus one for a round that straddles its edge); a
single 10 ms tick is not the test.

    .venv/bin/python bench/client_idle.py [--seconds 60] [--keepalive SECONDS]
        [--only listen|tray|tls]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import IOTNOTIFY, cpu_seconds, local_stack

from iotnotify.contract import DEFAULT_KEEPALIVE_SECONDS

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TARGET_MIB = 30.0
# CPU one keepalive round may cost an idle client: paho wakes, writes a
# PINGREQ frame through TLS or not, reads the PINGRESP, and goes back to
# select(). Measured well under 1 ms on this machine (README); 2 ms leaves
# room for a slower core without letting a busy loop pass.
PING_BUDGET_MS = 2.0


def _cpu_ns(pid: int) -> dict[str, int]:
    """Nanoseconds on a CPU per thread so far (first field of ``schedstat``)."""
    times: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[task.name] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended while we looked
    return times


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _context_switches(pid: int) -> dict[str, int]:
    """Context switches per thread; a thread that ends drops out of the next snapshot."""
    counts: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        counts[task.name] = sum(
            int(line.split()[1])
            for line in lines
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"))
        )
    return counts


@dataclass
class Figures:
    name: str
    window: float
    rss_mib: float
    cpu_seconds: float
    cpu_ns: int
    switches_per_hour: float


@contextmanager
def _xvfb_with_tray_host() -> Iterator[str]:
    """A private X server and a window owning the system-tray selection."""
    if not shutil.which("Xvfb"):
        raise SystemExit("Xvfb is missing: make setup (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            display_name = ":" + reader.readline().strip().decode()
        import Xlib.display
        import Xlib.X

        display = Xlib.display.Display(display_name)
        owner = display.screen().root.create_window(0, 0, 1, 1, 0, Xlib.X.CopyFromParent)
        owner.set_selection_owner(display.intern_atom("_NET_SYSTEM_TRAY_S0"), Xlib.X.CurrentTime)
        display.sync()
        try:
            yield display_name
        finally:
            owner.destroy()
            display.close()
    finally:
        server.terminate()
        server.wait(10)


def _lines_of(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit(
                f"{what}: no {text!r} within {timeout:.0f} s:\n{''.join(seen)}"
            ) from None
        seen.append(line)
        if text in line:
            return


@contextmanager
def _session_bus_with_notification_host() -> Iterator[tuple[str, queue.Queue[str]]]:
    """A private session D-Bus and a stand-in notification daemon on it:
    (the bus address, the daemon's output lines: ``notify <title>`` per pop-up)."""
    if not shutil.which("dbus-daemon"):
        raise SystemExit("dbus-daemon is missing: make setup (apt-get install dbus-daemon)")
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        if not address:
            raise SystemExit("dbus-daemon did not print its address")
        host = subprocess.Popen(
            [sys.executable, str(HERE / "notification_host.py")],
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": address},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            popups = _lines_of(host.stdout)
            _wait_for(popups, "ready", 30, "the stand-in notification daemon")
            yield address, popups
        finally:
            host.terminate()
            host.wait(10)
    finally:
        bus.terminate()
        bus.wait(10)


def _measure(
    name: str,
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    seconds: float,
    then: tuple[str, Callable[[], None]] | None = None,
) -> list[Figures]:
    """Figures for one idle window once ``command`` is caught up; with ``then``
    (a name and an action), the action runs next and a second window follows."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    results: list[Figures] = []
    try:
        _wait_for(_lines_of(proc.stderr), "caught-up", 60, name)
        time.sleep(2)  # let the start-up garbage settle before the window opens
        results.append(_window(name, proc.pid, seconds))
        if then is not None:
            then_name, action = then
            action()
            time.sleep(2)
            results.append(_window(then_name, proc.pid, seconds))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return results


def _window(name: str, pid: int, seconds: float) -> Figures:
    cpu0, ns0, sw0, t0 = cpu_seconds(pid), _cpu_ns(pid), _context_switches(pid), time.time()
    time.sleep(seconds)
    cpu1, ns1, sw1, t1 = cpu_seconds(pid), _cpu_ns(pid), _context_switches(pid), time.time()
    rss = _rss_mib(pid)
    window = t1 - t0
    switches = sum(count - sw0.get(tid, 0) for tid, count in sw1.items())
    used_ns = sum(ns - ns0.get(tid, 0) for tid, ns in ns1.items())
    return Figures(name, window, rss, cpu1 - cpu0, used_ns, switches * 3600 / window)


def _system_trust_with(ca_file: str, tmp: Path) -> tuple[Path, Path]:
    """The system's CAs plus ``ca_file``, two ways: a hashed directory of
    links (for ``SSL_CERT_DIR``) and one bundle file (for ``SSL_CERT_FILE``)."""
    paths = ssl.get_default_verify_paths()
    if not paths.capath or not paths.cafile:
        raise SystemExit(f"no system CA bundle and hashed directory here: {paths}")
    capath = tmp / "certs"
    capath.mkdir()
    for entry in os.scandir(paths.capath):
        stem, _, n = entry.name.partition(".")
        if len(stem) == 8 and n.isdigit():
            (capath / entry.name).symlink_to(os.path.realpath(entry.path))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", ca_file],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    n = 0
    while (capath / f"{subject_hash}.{n}").exists():
        n += 1
    (capath / f"{subject_hash}.{n}").symlink_to(ca_file)
    bundle = tmp / "bundle.pem"
    bundle.write_text(Path(paths.cafile).read_text() + Path(ca_file).read_text())
    return capath, bundle


def _tray_rows(
    label: str,
    after_label: str,
    state_file: Path,
    *,
    env: dict[str, str],
    tmp: Path,
    seconds: float,
    send_state: Path | None = None,
) -> list[Figures]:
    """The tray idle, then idle again after one pop-up (sent with ``send_state``,
    default ``state_file``), under a private Xvfb and session D-Bus."""
    target = ["--state-file", str(state_file), "--user", "alice"]
    send_target = ["--state-file", str(send_state or state_file), "--user", "alice"]
    settings = tmp / f"tray-{label.replace(' ', '-').replace(',', '')}.json"
    with (
        _xvfb_with_tray_host() as display,
        _session_bus_with_notification_host() as (bus, popups),
    ):
        tray_env = {
            **env,
            "DISPLAY": display,
            "DBUS_SESSION_BUS_ADDRESS": bus,
            "PYSTRAY_BACKEND": "xorg",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "XDG_CONFIG_HOME": str(tmp / "config"),
        }
        tray = [IOTNOTIFY, "tray", *target, "--settings", str(settings)]

        def pop_up() -> None:
            subprocess.run(
                [IOTNOTIFY, "send", *send_target, "--title", "Your turn", "bench"],
                cwd=tmp,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            _wait_for(popups, "notify Your turn", 30, "the tray's pop-up")

        return _measure(
            label,
            tray,
            env=tray_env,
            cwd=tmp,
            seconds=seconds,
            then=(after_label, pop_up),
        )


def _tls_rows(args: argparse.Namespace, tmp: Path) -> list[Figures]:
    """``iotnotify listen`` over ``wss://`` trusting the system store (see the docstring)."""
    results: list[Figures] = []
    with local_stack(None, prefix="idle-bench-tls-", extra_args=["--tls"]) as state_file:
        state = json.loads(state_file.read_text())
        capath, bundle = _system_trust_with(state["caFile"], tmp)
        # No caFile: the CLI then trusts the system store, as against AWS.
        system_state = tmp / "state-system-trust.json"
        system_state.write_text(json.dumps({**state, "caFile": ""}))
        listen = [IOTNOTIFY, "listen", "--state-file", str(system_state), "--user", "alice"]
        if args.keepalive is not None:
            listen += ["--keepalive", str(args.keepalive)]
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        env["PYTHONUNBUFFERED"] = "1"
        for label, extra in (
            ("listen wss, capath", {"SSL_CERT_DIR": str(capath)}),
            ("listen wss, bundle", {"SSL_CERT_FILE": str(bundle)}),
        ):
            results += _measure(label, listen, env={**env, **extra}, cwd=tmp, seconds=args.seconds)
        results += _tray_rows(
            "tray wss, capath",
            "tray wss, after pop-up",
            system_state,
            env={**env, "SSL_CERT_DIR": str(capath)},
            tmp=tmp,
            seconds=args.seconds,
            send_state=state_file,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--keepalive", type=int, default=None, help="listen's --keepalive")
    parser.add_argument("--state-file", type=Path, default=None, help="use a running stack")
    parser.add_argument("--only", choices=("listen", "tray", "tls"), default=None)
    args = parser.parse_args()

    results: list[Figures] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with local_stack(args.state_file, prefix="idle-bench-") as state_file:
            base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            target = ["--state-file", str(state_file), "--user", "alice"]
            if args.only in (None, "listen"):
                listen = [IOTNOTIFY, "listen", *target]
                if args.keepalive is not None:
                    listen += ["--keepalive", str(args.keepalive)]
                results += _measure(
                    "iotnotify listen", listen, env=base_env, cwd=tmp, seconds=args.seconds
                )
            if args.only in (None, "tray"):
                results += _tray_rows(
                    "iotnotify tray",
                    "tray, after a pop-up",
                    state_file,
                    env=base_env,
                    tmp=tmp,
                    seconds=args.seconds,
                )
        if args.only in (None, "tls"):
            results += _tls_rows(args, tmp)

    keepalive = args.keepalive or DEFAULT_KEEPALIVE_SECONDS
    print(f"idle clients, connected and caught up, {args.seconds:.0f} s window each")
    print(
        f"idle CPU = at most {PING_BUDGET_MS:.0f} ms per keepalive round the window can hold "
        f"(keepalive {keepalive} s); CPU ns from /proc/PID/task/*/schedstat, "
        "ticks (10 ms) from /proc/PID/stat"
    )
    print(
        f"{'client':<21} {'RSS MiB':>8} {'CPU ns':>11} {'ticks s':>8} {'ctx sw/h':>9}  "
        "target <= 30 MiB, idle CPU"
    )
    for fig in results:
        rounds = math.floor(fig.window / keepalive) + 1
        budget_ns = int(rounds * PING_BUDGET_MS * 1e6)
        idle = fig.cpu_ns <= budget_ns
        verdict = "PASS" if fig.rss_mib <= TARGET_MIB and idle else "FAIL"
        print(
            f"{fig.name:<21} {fig.rss_mib:8.1f} {fig.cpu_ns:11,d} {fig.cpu_seconds:8.3f} "
            f"{fig.switches_per_hour:9.0f}  "
            f"{fig.cpu_ns / 1e6:.2f} ms of {budget_ns / 1e6:.0f} ms for {rounds} rounds: {verdict}"
        )


if __name__ == "__main__":
    main()
