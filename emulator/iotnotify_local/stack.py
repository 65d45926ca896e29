"""``iotnotify local``: moto, the IoT emulator, the API, the worker and the page.

Everything runs in this process except the IoT emulator, which serves from a
child process of its own (``iotnotify_local.emulator_process``: off this
process's GIL, credentials looked up here, rule actions run here); Ctrl-C
or SIGTERM stops it all, and the child also stops if this process dies. The handlers are the
Lambda handlers, unchanged: like Lambda, this process gives them their
settings in the environment and a session acting as the functions role
(through ``clients.configure``; credentials stay in memory), and points the
AWS SDK at moto (``AWS_ENDPOINT_URL``) and at the emulator
(``IOTNOTIFY_IOT_DATA_URL``). Nothing else differs from AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
from aiohttp import web
from rich.console import Console
from rich.table import Table

# Why the stack refuses to start (or stops): the CLI's one-line "iotnotify: error:
# ..." form, never wrapped as rich wraps a long path.
from iotnotify.cli_output import error as _error
from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState
from iotnotify_local.api import LocalApi, Route, build_runner
from iotnotify_local.authorizer import CognitoAuthorizer
from iotnotify_local.cognito_keys import publish_signing_key, use_fresh_signing_key
from iotnotify_local.cognito_proxy import COGNITO_PATH
from iotnotify_local.iam_auth import IamAuthorizer
from iotnotify_local.persistence import AUTOSAVE_SECONDS, DEFAULT_DATA_DIR, DataDir, DataDirError
from iotnotify_local.poller import SqsPoller
from iotnotify_local.provision import LocalResources, provision

if TYPE_CHECKING:  # imported where the stack starts the emulator
    from iotnotify_emulator.rules import Rule
    from iotnotify_local.emulator_process import EmulatorProcess

__all__ = [
    "MOTO_HOST",
    "LocalStack",
    "PortInUse",
    "RemoteNotAllowed",
    "StackConfig",
    "api_routes",
    "canonical_host",
    "check_exposure",
    "find_web_dir",
    "run_local",
]

console = Console(stderr=True)


def api_routes() -> list[Route]:
    """The HTTP API's routes as the CDK app declares them (``infra/iotnotify_infra/api.py``):
    method, path, authorisation and required request parameters."""
    from iotnotify_handlers import (
        api_chats,
        api_games,
        api_notifications,
        api_notify,
        api_presence,
        api_task,
        api_token,
    )

    return [
        Route("GET", "/token", api_token.handler, "cognito"),
        Route("GET", "/notifications", api_notifications.handler, "cognito"),
        Route("POST", "/task", api_task.handler, "cognito"),
        Route("GET", "/chats", api_chats.handler, "cognito"),
        Route("POST", "/chats", api_chats.handler, "cognito"),
        Route("POST", "/chats/{room}/members", api_chats.handler, "cognito"),
        Route("GET", "/chats/{room}/messages", api_chats.handler, "cognito"),
        Route("POST", "/notify", api_notify.handler, "iam"),
        Route("POST", "/notify/key", api_notify.handler, "none", required_headers=("x-api-key",)),
        Route("POST", "/games", api_games.handler, "iam"),
        Route("POST", "/games/key", api_games.handler, "none", required_headers=("x-api-key",)),
        Route("GET", "/presence", api_presence.handler, "cognito", required_query=("users",)),
    ]


# moto accepts any key, so it only has to look like one; but the emulator
# honours role sessions only when their AssumeRole was signed by a caller the
# role trusts, and this key is the one that acts as the Lambda service (it
# assumes the functions role). New at every start, never written anywhere.
_ADMIN_KEY_ID: Final = "AKIA" + "".join(
    secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
)
_ADMIN_SECRET: Final = secrets.token_urlsafe(30)
_LAMBDA_SERVICE: Final = "lambda.amazonaws.com"
# moto answers anyone with any key: it listens on loopback only, whatever --host says.
MOTO_HOST: Final = "127.0.0.1"
_FUNCTION_SESSION_SECONDS: Final = 3600
_WEB_DIR: Final = Path(__file__).resolve().parents[2] / "web" / "dist"


def _is_our_page(web: Path) -> bool:
    """Whether ``web`` is this project's page (its package.json names it)."""
    try:
        manifest = json.loads((web / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("name") == "iotnotify-web"


def find_web_dir(cwd: Path | None = None) -> Path:
    """The built page: ``web/dist`` of this checkout (an editable install), else
    of ``cwd`` or its nearest parent that has one (a wheel install run inside a
    checkout: the wheel carries no page). If none is built, the package's own
    path, where the API then serves a page saying how to build it."""
    here = (cwd or Path.cwd()).resolve()
    for candidate in (_WEB_DIR, *(folder / "web" / "dist" for folder in (here, *here.parents))):
        # Ours only: another project's web/dist may be there too.
        if (candidate / "index.html").is_file() and _is_our_page(candidate.parent):
            return candidate
    return _WEB_DIR


class RemoteNotAllowed(Exception):
    """A non-loopback ``--host`` without ``--allow-remote``."""


REMOTE_WARNING: Final = (
    "local mode trusts everyone who can reach it: anyone who can connect to {host} can "
    "sign up, read the state file's demo passwords if they see this screen, call the API "
    "and the emulator's admin endpoints with the secret, and use every account on this stack. "
    "moto (AWS APIs, which accept any credentials) stays on 127.0.0.1. Use this on a network "
    "you trust, never on the internet."
)


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """What binding ``host`` gets: an address as is; anything else
    (``localhost``, ``127.1``, another name) every address it resolves to,
    without an IPv6 zone; none for a name that does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        resolved = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(address.partition("%")[0]) for address in resolved]


def _is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only (every address it
    names is loopback); a name that does not resolve is not loopback."""
    addresses = _addresses(host)
    return bool(addresses) and all(address.is_loopback for address in addresses)


def canonical_host(host: str) -> str:
    """``host`` as a URL carries it: an IPv4 address in any form ``inet_aton``
    takes (``127.1``, ``0x7f.0.0.1``) in dotted-quad form, anything else as given.

    Browsers rewrite such hosts the same way (WHATWG URL Standard, "IPv4
    parser"), so a URL presigned for ``127.1:port`` would not match the
    ``Host`` a page sends (``127.0.0.1:port``): the stack uses one form.
    """
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return host


def _has_ipv4(host: str) -> bool:
    """Whether ``host`` is, or resolves to, an IPv4 address: the emulator, moto
    and the API bind IPv4 sockets only (``socket.create_server``'s default)."""
    try:
        return bool(socket.getaddrinfo(host, None, socket.AF_INET))
    except (socket.gaierror, UnicodeError):
        return False


def _is_unspecified(host: str) -> bool:
    """Whether ``host`` is, or resolves to, an unspecified address (``0.0.0.0``, ``::``)."""
    return any(address.is_unspecified for address in _addresses(host))


def _lan_address() -> str | None:
    """The IPv4 address this machine reaches other networks from, if any.

    A UDP socket's ``connect`` only picks the route and source address; no
    packet is sent.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def check_exposure(host: str, *, allow_remote: bool) -> str | None:
    """None for a loopback ``host``; the warning to show for an allowed remote one.

    Raises :class:`RemoteNotAllowed` for a non-loopback ``host`` (a LAN
    address, a name) unless ``allow_remote`` is set: the local stack has no
    real authentication boundary beyond what this machine grants. An
    unspecified address (``0.0.0.0``, ``::``) is refused either way: every
    URL the stack hands out names ``host`` (the page's ``config.json``, the
    presigned URLs of ``GET /token``, the state file), and no other machine
    can open ``0.0.0.0``; the message names this machine's address instead.
    """
    if _is_unspecified(host):
        lan = _lan_address()
        example = f"--host {lan}" if lan else "--host <this machine's address on the network>"
        raise RemoteNotAllowed(
            f"--host {host} would listen everywhere, but every URL the stack gives out (the "
            f"page's API address, the tokens' WebSocket URLs, the state file) names {host}, "
            "which a phone or another computer cannot open: give this machine's own address, "
            f"{example} --allow-remote (local mode trusts everyone who can reach it)."
        )
    if _is_loopback(host):
        return None
    if not allow_remote:
        raise RemoteNotAllowed(
            f"--host {host} would expose the local stack beyond this machine; local mode "
            "trusts everyone who can reach it. Add --allow-remote if that is what you want."
        )
    return REMOTE_WARNING.format(host=host)


class PortInUse(Exception):
    """A port the stack needs is taken (often: another ``iotnotify local``)."""


@dataclass(frozen=True, slots=True)
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 8700  # API and web; moto, ws and wss use the next three; 0 = free ports
    app: str = "iotnotify"
    stage: str = "local"
    region: str = "us-east-1"
    url_scheme: str = "ws"  # what GET /token vends; wss needs the generated CA trusted
    web_dir: Path = field(default_factory=find_web_dir)
    # Where users, inbox, rooms, ids and the CA are kept across restarts
    # (iotnotify_local.persistence); None keeps nothing.
    data_dir: Path | None = None
    fresh: bool = False  # empty data_dir before starting

    def ports(self) -> tuple[int, int, int, int]:
        if self.port == 0:
            return (0, 0, 0, 0)
        return (self.port, self.port + 1, self.port + 2, self.port + 3)


def _check_free(host: str, ports: tuple[int, ...]) -> None:
    """Raise :class:`PortInUse` if a live socket holds one of ``ports``.

    The probe sets ``SO_REUSEADDR``, as every listener of the stack does
    (aiohttp's ``create_server``, ``socket.create_server`` in the emulator,
    werkzeug's ``HTTPServer`` under moto): on Linux that lets a bind succeed
    over connections left in TIME_WAIT by the previous run (for 60 s after
    it stops), and still fails while another socket is bound or listening
    there (socket(7), "SO_REUSEADDR"). Without it a restart on the same
    ports was refused for a minute.
    """
    for port in ports:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if os.name == "posix":  # on Windows SO_REUSEADDR would take a live port
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"port {port} on {host} is already in use; is another "
                        "`iotnotify local` running? Stop it, or pick other ports with "
                        "--port N (or --port 0 for free ones)."
                    ) from exc
                raise


def _moto_admin(region: str) -> boto3.session.Session:
    return boto3.session.Session(
        region_name=region, aws_access_key_id=_ADMIN_KEY_ID, aws_secret_access_key=_ADMIN_SECRET
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class LocalStack:
    """Starts and stops every part; attributes say where each part listens."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.resources: LocalResources | None = None
        self.state: LocalState | None = None
        self._moto: Any = None
        self._emulator: EmulatorProcess | None = None
        self._poller: SqsPoller | None = None
        self._rules: list[Rule] | None = None
        self._runner: web.AppRunner | None = None
        self._env_stack = contextlib.ExitStack()
        self._data: DataDir | None = None

    # --- start ------------------------------------------------------------------

    async def start(self) -> LocalState:
        cfg = self.config
        api_port, moto_port, ws_port, wss_port = cfg.ports()
        _check_free(cfg.host, (api_port, ws_port, wss_port))
        _check_free(MOTO_HOST, (moto_port,))
        saved: LocalResources | None = None
        if cfg.data_dir is not None:
            self._data = DataDir.open(cfg.data_dir, fresh=cfg.fresh)
            # Into moto's in-process backends, before its server answers anything.
            saved = self._data.load(app=cfg.app, stage=cfg.stage, region=cfg.region)
        from moto.server import ThreadedMotoServer

        # moto's werkzeug server logs every request; the SQS poller alone
        # would print a line a second.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        from iotnotify_emulator.moto_credentials import install_sts_recorder
        from iotnotify_local.moto_dynamodb import serialise_dynamodb

        # Before the first AssumeRole: the emulator honours only recorded sessions.
        install_sts_recorder()
        # Before the first DynamoDB request: moto's threaded server would
        # otherwise let a cancelled transaction undo other requests' writes.
        serialise_dynamodb()
        if moto_port == 0:
            moto_port = _free_port(MOTO_HOST)
        self._moto = ThreadedMotoServer(ip_address=MOTO_HOST, port=moto_port, verbose=False)
        self._moto.start()
        moto_url = f"http://{MOTO_HOST}:{moto_port}"

        admin = _moto_admin(cfg.region)
        # Provisioning talks to moto through the same endpoint setting the handlers use.
        self._env_stack.enter_context(_environment({"AWS_ENDPOINT_URL": moto_url}))
        if saved is None:
            resources = provision(admin, app=cfg.app, stage=cfg.stage)
            # Before any user signs in: tokens signed with moto's bundled key must not verify.
            use_fresh_signing_key(
                account=resources.account, region=cfg.region, pool_id=resources.user_pool_id
            )
        else:
            resources = saved
            # The emulator starts with no connection: sessions saved as open
            # ended with the last run, without a disconnect event.
            from iotnotify.presence import PresenceTable

            PresenceTable(
                admin.resource("dynamodb").Table(resources.names.presence_table)
            ).end_open_sessions()
            # The pool kept the key an earlier run made; publish it again.
            publish_signing_key(
                account=resources.account, region=cfg.region, pool_id=resources.user_pool_id
            )
        self.resources = resources

        from iotnotify_emulator.moto_credentials import MotoCredentialStore, count_iam_changes
        from iotnotify_emulator.server import EmulatorConfig
        from iotnotify_local.emulator_process import EmulatorProcess

        store = MotoCredentialStore(
            accounts=[resources.account],
            services={_ADMIN_KEY_ID: (_ADMIN_SECRET, _LAMBDA_SERVICE)},
            region=cfg.region,
        )
        # Its own process, off this one's GIL (moto, the API, the poller, the
        # autosave, the rules' Lambda handlers): emulator_process.py says why.
        self._emulator = EmulatorProcess(
            EmulatorConfig(
                host=cfg.host,
                ws_port=ws_port,
                wss_port=wss_port,
                region=cfg.region,
                account_id=resources.account,
                fault_injection=True,  # POST {iotDataUrl}/_emulator/restart for demos and tests
                cert_dir=None if self._data is None else self._data.ca_dir,
            ),
            credentials=store,
        )
        # The child caches credentials until an IAM write moves this counter.
        count_iam_changes(self._emulator.generation)
        self._emulator.start()
        emu = self._emulator
        endpoint_port = emu.ws_port if cfg.url_scheme == "ws" else emu.wss_port
        handler_env = {
            "AWS_REGION": cfg.region,
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_ENDPOINT_URL": moto_url,
            "IOTNOTIFY_APP": cfg.app,
            "IOTNOTIFY_STAGE": cfg.stage,
            "IOTNOTIFY_SSM_STAGE": resources.names.ssm_stage,
            "IOTNOTIFY_INBOX_TABLE": resources.names.inbox_table,
            "IOTNOTIFY_ROOMS_TABLE": resources.names.rooms_table,
            "IOTNOTIFY_CHAT_HISTORY_TABLE": resources.names.chat_history_table,
            "IOTNOTIFY_GAMES_TABLE": resources.names.games_table,
            "IOTNOTIFY_PRESENCE_TABLE": resources.names.presence_table,
            "IOTNOTIFY_SUBSCRIBER_ROLE_ARN": resources.subscriber_role_arn,
            "IOTNOTIFY_TASK_QUEUE_URL": resources.task_queue_url,
            "IOTNOTIFY_IOT_ENDPOINT": f"{cfg.host}:{endpoint_port}",
            "IOTNOTIFY_IOT_WS_SCHEME": cfg.url_scheme,
            "IOTNOTIFY_IOT_DATA_URL": emu.data_url,
            "POWERTOOLS_SERVICE_NAME": "iotnotify",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        }
        self._env_stack.enter_context(_environment(handler_env))
        self._use_functions_role()

        from iotnotify_handlers import (
            chat_moderator,
            presence_events,
            task_worker,
        )

        issuer = f"https://cognito-idp.{cfg.region}.amazonaws.com/{resources.user_pool_id}"
        authorizer = CognitoAuthorizer(
            jwks_url=f"{moto_url}/{resources.user_pool_id}/.well-known/jwks.json",
            issuer=issuer,
            audience=resources.user_pool_client_id,
        )

        verify_iam = IamAuthorizer(
            store=store,
            region=cfg.region,
            account=resources.account,
            api_id=resources.api_id,
            stage=cfg.stage,
        )

        api_url_port = api_port or _free_port(cfg.host)
        api_url = f"http://{cfg.host}:{api_url_port}"
        web_config = {
            "apiUrl": api_url,
            "region": cfg.region,
            "iotEndpoint": f"{cfg.host}:{endpoint_port}",
            "userPoolId": resources.user_pool_id,
            "userPoolClientId": resources.user_pool_client_id,
            # The page signs in through the API (moto itself is loopback-only).
            "cognitoEndpoint": f"{api_url}{COGNITO_PATH}",
            "stage": cfg.stage,
        }
        api = LocalApi(
            cognito_url=moto_url,
            routes=api_routes(),
            authorizer=authorizer,
            iam_verifier=verify_iam,
            stage=cfg.stage,
            web_dir=cfg.web_dir,
            config=web_config,
        )
        self._runner = build_runner(api)
        await self._runner.setup()
        # asyncio sets SO_REUSEADDR on POSIX by default (restart over TIME_WAIT)
        # and not on Windows, where it would let a second server take the port.
        await web.TCPSite(self._runner, cfg.host, api_url_port).start()

        # The event source mapping is AWS's side of Lambda, not the function's role.
        sqs = _moto_admin(cfg.region).client("sqs")
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=resources.task_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self._poller = SqsPoller(
            sqs=sqs,
            queue_url=resources.task_queue_url,
            queue_arn=queue_arn,
            region=cfg.region,
            handler=task_worker.handler,
            on_error=lambda message: console.print(f"[yellow]worker:[/yellow] {message}"),
        )
        self._poller.start()

        # Topic rules are IoT Core's side: the rule invokes the moderator and its
        # error action writes to the chat DLQ, as the rule's own role would on AWS.
        from iotnotify.contract import TopicScheme
        from iotnotify_local.topic_rules import emulator_rules

        chat_dlq_url = (
            resources.chat_dlq_url
            # A data directory saved before the chat DLQ existed: create it now.
            or sqs.create_queue(QueueName=resources.names.chat_dlq)["QueueUrl"]
        )
        self._rules = list(
            emulator_rules(
                TopicScheme(cfg.app, cfg.stage),
                handlers={
                    "moderator": chat_moderator.handler,
                    "presence": presence_events.handler,
                },
                sqs=sqs,
                dead_letter_queue_urls={
                    "moderator": chat_dlq_url,
                    "presence": resources.presence_dlq_url,
                },
            )
        )
        # Rules run in the emulator's process; their Lambda and SQS actions here.
        emu.install_rules(self._rules)

        self.state = LocalState(
            region=cfg.region,
            app=cfg.app,
            stage=cfg.stage,
            apiUrl=api_url,
            webUrl=f"{api_url}/",
            iotWsUrl=emu.ws_url,
            iotWssUrl=emu.wss_url or "",
            iotDataUrl=emu.data_url,
            caFile=str(emu.ca_file or ""),
            awsEndpointUrl=moto_url,
            userPoolId=resources.user_pool_id,
            userPoolClientId=resources.user_pool_client_id,
            users=resources.users_json(),
            publisher={
                "accessKeyId": resources.publisher.accessKeyId,
                "secretAccessKey": resources.publisher.secretAccessKey,
            },
            extra={
                "notifyApiKey": resources.notify_api_key,
                "taskQueueUrl": resources.task_queue_url,
                "taskDlqUrl": resources.task_dlq_url,
                "chatDlqUrl": chat_dlq_url,
                "presenceDlqUrl": resources.presence_dlq_url,
                "emulatorStatsUrl": f"{emu.data_url}/_emulator/stats",
                "emulatorPid": emu.pid,  # benches read its CPU and RSS
                # POST .../_emulator/restart and the stats' refusal records need
                # this per-start value in the X-Emulator-Secret header.
                "emulatorAdminSecret": emu.admin_secret,
            },
        )
        return self.state

    def save(self) -> None:
        """Write moto's state and the resources to the data directory (if any)."""
        if self._data is not None and self.resources is not None:
            cfg = self.config
            self._data.save(self.resources, app=cfg.app, stage=cfg.stage, region=cfg.region)

    def start_autosave(self) -> None:
        """Save every ``AUTOSAVE_SECONDS`` so a crash loses at most that much."""
        if self._data is not None:
            self._data.start_autosave(
                self.save,
                lambda message: console.print(f"[yellow]data:[/yellow] {message}"),
                every=AUTOSAVE_SECONDS,
            )

    def _use_functions_role(self) -> None:
        """Give the handlers the functions role's credentials, as Lambda does
        (in a session, renewed before expiry; never in the environment)."""
        assert self.resources is not None
        from iotnotify_handlers import clients
        from iotnotify_local.role_session import assumed_role_session

        clients.configure(
            session=assumed_role_session(
                sts=_moto_admin(self.config.region).client("sts"),
                role_arn=self.resources.functions_role_arn,
                session_name=f"{self.config.app}-{self.config.stage}-functions",
                region=self.config.region,
                duration=_FUNCTION_SESSION_SECONDS,
            )
        )

    def on_emulator_exit(self, callback: Callable[[int | None], None]) -> None:
        """``callback(exit code)``, on another thread, if the emulator's process
        ends before :meth:`stop` (:meth:`EmulatorProcess.on_exit`)."""
        if self._emulator is not None:
            self._emulator.on_exit(callback)

    # --- stop -------------------------------------------------------------------

    async def stop(self) -> None:
        if self._poller is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._poller.stop)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._emulator is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._emulator.stop)
        if self._moto is not None:
            self._moto.stop()
        if self._data is not None:
            self._data.stop_autosave()
            try:
                # Everything above has stopped: nothing changes moto's state any more.
                self.save()
            except DataDirError as exc:
                _error(f"the data directory was not saved: {exc}")
            finally:
                self._data.close()
        self._env_stack.close()


def _summary(state: LocalState, state_file: Path) -> Table:
    table = Table(title="iotnotify local", show_header=True)
    table.add_column("what")
    # Wrapped, never cut with an ellipsis: the CA file and the state file are
    # paths a newcomer copies from here, in an 80-column terminal too.
    table.add_column("where", overflow="fold")
    table.add_row("web page", state.webUrl)
    table.add_row("HTTP API", state.apiUrl)
    table.add_row("IoT MQTT over WebSocket", state.iotWsUrl)
    if state.iotWssUrl:
        table.add_row("IoT MQTT over TLS", f"{state.iotWssUrl}  (CA: {state.caFile})")
    table.add_row("IoT data (iot-data Publish)", state.iotDataUrl)
    table.add_row("AWS APIs (moto)", state.awsEndpointUrl)
    table.add_row("Cognito user pool", f"{state.userPoolId} / client {state.userPoolClientId}")
    for user in state.users:
        table.add_row(f"demo user {user['name']}", f"{user['username']}  {user['password']}")
    table.add_row("state file", str(state_file))
    return table


def _data_row(config: StackConfig) -> str:
    if config.data_dir is None:
        return "nothing is kept after Ctrl-C"
    return f"{config.data_dir}  (kept across restarts; --fresh starts clean)"


class StartInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM while the stack was starting (before "ready.").

    ``signum`` is the signal. A ``KeyboardInterrupt``, not an ``Exception``:
    code in between (botocore's retries, moto) catches ``Exception`` and must
    not swallow it.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def _interrupt_start(signum: int, _frame: object) -> None:
    # Further stop signals are ignored: the clean-up that follows (the
    # emulator's process, moto, the data directory's lock) must run to its
    # end, or a child would be left behind.
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    raise StartInterrupted(signum)


async def _serve(config: StackConfig, state_file: Path) -> int:
    stack = LocalStack(config)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Until the stack is up, Ctrl-C or SIGTERM raises where start-up is
    # (provisioning in moto, waiting for the emulator's process, importing the
    # handlers): a handler on the event loop ran only when start() next
    # awaited, so both waited until "ready.". The finally below stops what
    # had started.
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, _interrupt_start)
    try:
        with console.status("starting moto, the IoT emulator and the API..."):
            state = await stack.start()
        for stop_signal in _STOP_SIGNALS:
            loop.add_signal_handler(stop_signal, stopped.set)
        from iotnotify_emulator.runtime import shorten_switch_interval, tune_gc_for_serving

        tune_gc_for_serving()
        # The threads answering the emulator's credential lookups and rule
        # actions share this GIL with moto, the API and the poller.
        shorten_switch_interval()
        stack.save()
        stack.start_autosave()
        try:
            state.write(state_file)
        except OSError as exc:  # checked before the start; this is a race
            _error(f"cannot write the state file {state_file}: {exc}")
            return 2
        table = _summary(state, state_file)
        table.add_row("data directory", _data_row(config))
        Console().print(table)
        # An emulator process that dies (killed, out of memory) stops the
        # stack: a page and API with no IoT endpoint behind them would only
        # fail later, one client at a time, with nothing said here.
        emulator_exits: list[int | None] = []

        def emulator_exited(code: int | None) -> None:
            emulator_exits.append(code)
            loop.call_soon_threadsafe(stopped.set)

        stack.on_emulator_exit(emulator_exited)
        console.print("ready. Ctrl-C stops everything.")
        await stopped.wait()
        if emulator_exits:
            _error(
                f"the IoT emulator's process (pid "
                f"{state.extra.get('emulatorPid')}) exited unexpectedly (exit code "
                f"{emulator_exits[0]}); stopping everything."
            )
            return 1
        console.print("stopping...")
        return 0
    finally:
        await stack.stop()
        if stack.state is not None:
            # Nothing is listening any more: a stale file would mislead `send`.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state_file)


def _unwritable_state_file(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None: checked before anything starts
    (moto, the emulator and the API took seconds to start and then ended in
    a traceback from :meth:`LocalState.write`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if path.is_dir():
        return "it is a directory"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"{path.parent} is not writable"
    return None


def _foreign_state_file(path: Path) -> str | None:
    """Why ``path`` is a file that no stack wrote, or None (absent, or a state file).

    The stack overwrites its state file and deletes it when it stops: a
    ``--state-file`` naming someone's ``notes.txt`` or ``package.json`` lost
    it. A state file (stale, or of an older version with other fields) is a
    JSON object with ``apiUrl``; it is written atomically, so a damaged one
    was not left by a crash.
    """
    if not path.is_file():  # absent, or what _unwritable_state_file explains
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"it cannot be read as one ({exc})"
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return "it is not JSON"
    if not isinstance(raw, dict) or "apiUrl" not in raw:
        return "it holds other JSON"
    return None


def _running_owner(path: Path) -> LocalState | None:
    """The running stack that wrote ``path``, or None (no file, unreadable, or stale).

    A second stack writing the same file would point every client at itself and
    delete the file when it stops, while the first one is still up.
    """
    from iotnotify.state_file import StateFileError

    if not path.exists():
        return None
    try:
        return LocalState.read(path, check_running=True)
    except StateFileError:  # also StackNotRunning: a stale file is ours to replace
        return None


def run_local(
    *,
    host: str,
    port: int,
    state_file: Path | None,
    app: str,
    stage: str,
    tls: bool = False,
    data_dir: Path | None = None,
    fresh: bool = False,
    allow_remote: bool = False,
) -> int:
    """Entry point of ``iotnotify local``; returns the process exit status.

    A non-loopback ``host`` needs ``allow_remote`` (exit status 2 otherwise)
    and prints a warning; moto is bound to loopback in every case.

    ``data_dir`` (default ``.iotnotify/data``) keeps users, inbox, rooms,
    ids, the API key and the CA across restarts; ``fresh`` first discards what
    a stack saved there (not other files).
    Exit status 2: a port, the data directory or the state file is in use
    (by a running stack), or the data directory cannot be restored. Ctrl-C
    before "ready." stops what had started (the emulator's process, moto,
    the API) and returns 128 + the signal, as a shell reports a process the
    signal ended (bash manual, "Exit Status"): 130, or 143 for a SIGTERM.
    Ctrl-C once
    ready is the usual way to stop it, status 0.
    """
    host = canonical_host(host)
    config = StackConfig(
        host=host,
        port=port,
        app=app,
        stage=stage,
        url_scheme="wss" if tls else "ws",
        data_dir=(data_dir or DEFAULT_DATA_DIR).resolve(),
        fresh=fresh,
    )
    path = (state_file or DEFAULT_STATE_FILE).resolve()
    owner = _running_owner(path)
    if owner is not None:
        _error(
            f"the state file {path} belongs to an `iotnotify local` that is "
            f"running (pid {owner.pid}, {owner.apiUrl}); stop it, or give this one its own "
            "--state-file (and --data-dir)"
        )
        return 2
    foreign = _foreign_state_file(path)
    if foreign is not None:
        _error(
            f"--state-file {path} exists and is not a state file "
            f"({foreign}); it would be overwritten, then deleted when the stack stops: "
            "give a path of its own (or delete the file if it is a damaged state file)"
        )
        return 2
    unwritable = _unwritable_state_file(path)
    if unwritable is not None:
        _error(
            f"cannot write the state file {path}: {unwritable}; "
            "give --state-file a path in a folder you can write"
        )
        return 2
    if _is_unspecified(host):
        try:
            check_exposure(host, allow_remote=allow_remote)
        except RemoteNotAllowed as exc:
            _error(f"{exc}")
            return 2
    if not _has_ipv4(host):
        _error(
            f"--host {host} has no IPv4 address; every listener of the "
            "local stack is IPv4 (127.0.0.1, localhost, or this machine's network "
            "address with --allow-remote)"
        )
        return 2
    try:
        warning = check_exposure(host, allow_remote=allow_remote)
    except RemoteNotAllowed as exc:
        _error(f"{exc}")
        return 2
    if warning is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    try:
        return asyncio.run(_serve(config, path))
    except (PortInUse, DataDirError) as exc:
        _error(f"{exc}")
        return 2
    except StartInterrupted as exc:
        # _serve's finally (or asyncio.run cancelling it) has stopped it all.
        said = "terminated" if exc.signum == signal.SIGTERM else "interrupted"
        console.print(f"{said} while starting; stopped everything it had started.")
        # 128 + the signal, as a shell reports a process the signal ended.
        return 128 + exc.signum
