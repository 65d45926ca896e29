"""``python -m iotnotify_emulator``: the emulator plus an in-process moto server, for manual use.

moto runs in this process because the emulator reads credentials from
moto's STS and IAM backends (see :mod:`iotnotify_emulator.moto_credentials`):
create roles and users and call AssumeRole against the printed ``moto_url``
(signed with an IAM user's keys that the role's trust policy allows: sessions
assumed with made-up keys are refused), then connect with the resulting
credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

try:
    from iotnotify_emulator.moto_credentials import MotoCredentialStore
    from iotnotify_emulator.runtime import run, tune_gc_for_serving
    from iotnotify_emulator.server import EmulatorConfig, start_emulator
except ImportError as exc:
    # The core install ships this package but not aiohttp, moto or boto3
    # (the [local] extra): name the extra instead of a traceback.
    raise SystemExit(
        f"python -m iotnotify_emulator needs the [local] extra ({exc.name or exc} is not "
        "installed): pip install 'iotnotify[local]'"
    ) from exc

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m iotnotify_emulator", description="Local AWS IoT Core data plane."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ws-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--wss-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--no-tls", action="store_true", help="serve ws:// only")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account-id", default="123456789012")
    parser.add_argument("--cert-dir", type=Path, default=None)
    parser.add_argument("--moto-port", type=int, default=0, help="in-process moto server port")
    parser.add_argument("--info-file", type=Path, default=None, help="write endpoints as JSON")
    parser.add_argument("--log-level", default="INFO")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from moto.server import ThreadedMotoServer

    # moto answers any credentials: loopback only, whatever --host says.
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
    moto.start()
    try:
        moto_host, moto_port = moto.get_host_and_port()
        config = EmulatorConfig(
            host=args.host,
            ws_port=args.ws_port,
            wss_port=None if args.no_tls else args.wss_port,
            region=args.region,
            account_id=args.account_id,
            cert_dir=args.cert_dir,
        )
        async with start_emulator(config, credentials=MotoCredentialStore()) as emulator:
            tune_gc_for_serving()
            info = {
                "ws_url": emulator.ws_url,
                "wss_url": emulator.wss_url,
                "data_url": emulator.data_url,
                "data_url_tls": emulator.data_url_tls,
                "ca_file": str(emulator.ca_file) if emulator.ca_file else None,
                "moto_url": f"http://{moto_host}:{moto_port}",
                "region": args.region,
                "account_id": args.account_id,
            }
            text = json.dumps(info, indent=2)
            print(text, flush=True)  # the command prints its endpoints
            if args.info_file is not None:
                args.info_file.write_text(text + "\n")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        moto.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    run(_serve(args))


if __name__ == "__main__":
    main()
