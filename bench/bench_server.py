"""The emulator under test, alone in its own process, for ``emulator_bench.py``.

Run: ``python bench/bench_server.py --keys KEYS.json --info-file INFO.json``.
Seeds an InMemoryCredentialStore from the key file (see :mod:`benchlib`),
serves ws:// on 127.0.0.1, writes ``{"ws_url", "pid"}`` to the info file once
listening, and stops on SIGTERM/SIGINT.

Every AWS rule stays on (SigV4, IAM on connect/subscribe/publish/receive,
limits) except the per-connection publish quota (100/s on AWS): the bench
has one publisher connection, and the quota would cap the whole run at
100 messages/s. The connection cap (4,096 by default) is raised for the
10,000 idle connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from benchlib import REGION, KeyFile, raise_fd_limit

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.http_guard import ServerLimits
from iotnotify_emulator.runtime import run, tune_gc_for_serving


async def _serve(keys: Path, info_file: Path) -> None:
    store = InMemoryCredentialStore()
    for credential in KeyFile.read(keys).credentials():
        store.add(credential)
    config = EmulatorConfig(
        wss_port=None,
        region=REGION,
        publish_rate_limit=None,
        # The idle measurement holds 10,000 connections: above the default
        # cap (4,096, a guard for iotnotify local), below the raised fd limit.
        http_limits=ServerLimits(max_connections=100_000),
    )
    async with start_emulator(config, credentials=store) as emulator:
        tune_gc_for_serving()  # as python -m iotnotify_emulator does
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        partial = info_file.with_suffix(".tmp")
        partial.write_text(json.dumps({"ws_url": emulator.ws_url, "pid": os.getpid()}))
        partial.rename(info_file)  # atomic: the orchestrator polls for this file
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--info-file", type=Path, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve(args.keys, args.info_file))


if __name__ == "__main__":
    main()
