"""``iotnotify deploy / destroy / synth``: the CDK app in ``infra/``, driven
by the AWS CDK CLI that ``make setup`` installs into ``infra/node_modules``.

The commands only translate options into CDK context (``stageName``,
``ssmStageName``) and run ``npx cdk`` from ``infra/``, so what they deploy is
exactly what ``npx cdk deploy`` deploys by hand (see ``infra/README.md``).
The Python running this command also runs the CDK app (``--app``), so the
stack is built with the same installed ``iotnotify`` as the CLI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import click

from iotnotify.cli_output import CommandError

__all__ = [
    "APP_NAME",
    "cdk_command",
    "deploy",
    "destroy",
    "find_infra_dir",
    "run_cdk",
    "synth",
]

APP_NAME: Final = "iotnotify"
INFRA_DIR_ENV: Final = "IOTNOTIFY_INFRA_DIR"
# The same rule infra/iotnotify_infra/config.py enforces (which stays the
# authority); checked here too so a typo fails before Node and CDK start.
_STAGE_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,29}")
# What the CDK app imports (the [infra] extra). The app runs in this very
# interpreter (``--app``), so without them it would fail inside ``npx cdk``
# with a traceback instead of naming the extra.
_INFRA_MODULES: Final = ("aws_cdk", "constructs", "cdk_nag")


def find_infra_dir(cwd: Path | None = None) -> Path:
    """The CDK app's folder (``app.py`` and ``cdk.json``); raises :class:`CommandError`.

    ``$IOTNOTIFY_INFRA_DIR`` when set; else ``infra/`` of the checkout this
    package runs from (an editable install); else ``infra/`` in ``cwd`` (the
    current directory) or its nearest parent that has one, so a wheel
    install run inside a checkout finds it (the wheel carries no CDK app).
    """
    configured = os.environ.get(INFRA_DIR_ENV)
    if configured:
        candidates = [Path(configured)]
    else:
        here = (cwd or Path.cwd()).resolve()
        candidates = [
            Path(__file__).resolve().parents[2] / "infra",
            *(folder / "infra" for folder in (here, *here.parents)),
        ]
    for infra in candidates:
        # iotnotify_infra/ marks ours: another project's CDK app has app.py too.
        if all((infra / name).exists() for name in ("app.py", "cdk.json", "iotnotify_infra")):
            return infra
    raise CommandError(
        f"no CDK app at {candidates[0]}"
        + ("" if configured else " or in an infra/ folder here or above")
        + f": run iotnotify inside a checkout of the repository or set {INFRA_DIR_ENV} "
        "to its infra/ folder"
    )


def _check_infra_extra() -> None:
    """Raise :class:`CommandError` naming ``[infra]`` when its packages are missing."""
    missing = [name for name in _INFRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f"deploy, destroy and synth need the [infra] extra ({', '.join(missing)} not "
            "installed): pip install 'iotnotify[infra]'"
        )


def _check_tools(infra: Path) -> str:
    npx = shutil.which("npx")
    if npx is None:
        raise CommandError(
            "npx was not found: install Node.js 18 or newer (it brings npm and npx), "
            "then run `make setup`"
        )
    if not (infra / "node_modules" / ".bin" / "cdk").exists():
        raise CommandError(
            f"the AWS CDK CLI is not installed in {infra / 'node_modules'}: "
            "run `make setup` (or `npm ci --prefix infra`)"
        )
    return npx


def _stage(value: str, *, option: str) -> str:
    if not _STAGE_RE.fullmatch(value):
        raise click.BadParameter(
            f"{value!r}: expected 1 to 30 characters from a-z 0-9 - starting with a letter",
            param_hint=option,
        )
    return value


def cdk_command(
    action: str,
    *,
    stage: str,
    ssm_stage: str | None = None,
    npx: str = "npx",
    python: str = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``npx cdk ...`` argv for one stage (run it from ``infra/``)."""
    context = {"stageName": stage, "ssmStageName": ssm_stage or stage}
    argv = [npx, "--no-install", "cdk", action, "--app", f"{shlex.quote(python)} app.py"]
    for key, value in context.items():
        argv += ["--context", f"{key}={value}"]
    argv += ["--no-notices", *extra, f"{APP_NAME}-{stage}"]
    return argv


def run_cdk(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> int:
    """Run the CDK CLI in the foreground; its exit status becomes ours."""
    merged = {
        **os.environ,
        # jsii (under the CDK app) nags about the Node version on every run.
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": os.environ.get(
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20"
        ),
        **(env or {}),
    }
    return subprocess.run(list(argv), cwd=cwd, env=merged, check=False).returncode  # noqa: S603


def _check_credentials(action: str) -> None:
    """Refuse ``deploy``/``destroy`` at once when no AWS credentials are found.

    The CDK resolves the account only after synthesising the app (a dozen
    seconds), then says "Unable to resolve AWS account to use. It must be
    either configured when you define your CDK Stack, or through the
    environment". botocore looks where the CDK CLI does (environment
    variables, the shared config and credentials files with ``AWS_PROFILE``,
    SSO, container and instance roles: botocore/credentials.py,
    ``create_credential_resolver``); without botocore (``[infra]`` alone)
    the CDK is left to say it.
    """
    try:
        import botocore.session
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return
    try:
        credentials = botocore.session.get_session().get_credentials()
    except BotoCoreError as exc:  # a profile that does not exist, a broken config
        raise CommandError(f"cannot read your AWS credentials: {exc}") from exc
    if credentials is None:
        raise CommandError(
            f"no AWS credentials found: `iotnotify {action}` acts on the account of your "
            "credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY); `iotnotify synth` needs none"
        )


def _run(
    action: str,
    *,
    stage: str,
    ssm_stage: str | None,
    extra: Sequence[str],
    confirm_with: str | None = None,
) -> None:
    _check_infra_extra()  # first: a missing extra is named wherever this runs
    infra = find_infra_dir()
    npx = _check_tools(infra)
    if confirm_with is not None and not sys.stdin.isatty():
        # The CDK would synthesise for seconds, then refuse: "terminal (TTY) is
        # not attached so we are unable to get a confirmation from the user".
        raise click.UsageError(
            f"no terminal to ask for confirmation on: give {confirm_with} to {action} "
            f"stage {stage!r}"
        )
    if action in ("deploy", "destroy"):
        _check_credentials(action)
    argv = cdk_command(action, stage=stage, ssm_stage=ssm_stage, npx=npx, extra=extra)
    click.echo(f"$ (cd {infra} && {shlex.join(argv)})", err=True)
    code = run_cdk(argv, cwd=infra)
    if code != 0:
        raise click.exceptions.Exit(code)


def _optional_stage(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _stage(value, option="--ssm-stage")


_ssm_stage_option = click.option(
    "--ssm-stage",
    default=None,
    callback=_optional_stage,
    help="Read SSM parameters of this stage (default: --stage), e.g. dev for a feature stage.",
)

_stage_option = click.option(
    "--stage",
    required=True,
    callback=lambda _ctx, _param, value: _stage(value, option="--stage"),
    help="Stage to act on (dev, prod, feat-x...); every resource name carries it.",
)


@click.command()
@_stage_option
@_ssm_stage_option
@click.option("--yes", is_flag=True, help="Do not ask before IAM or security-group changes.")
@click.option(
    "--outputs-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the stack outputs (API URL, user pool ids, IoT endpoint) to this JSON file.",
)
def deploy(stage: str, ssm_stage: str | None, yes: bool, outputs_file: Path | None) -> None:
    """Deploy (or update) one stage to the AWS account of your credentials."""
    extra = ["--require-approval", "never"] if yes else []
    if outputs_file is not None:
        extra += ["--outputs-file", str(outputs_file.resolve())]
    _run("deploy", stage=stage, ssm_stage=ssm_stage, extra=extra)


@click.command()
@_stage_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(stage: str, yes: bool) -> None:
    """Delete one stage's stack (data too, unless the stage retains it)."""
    _run(
        "destroy",
        stage=stage,
        ssm_stage=None,
        extra=["--force"] if yes else [],
        confirm_with=None if yes else "--yes",
    )


@click.command()
@_stage_option
@_ssm_stage_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cloud assembly folder (default: infra/cdk.out).",
)
def synth(stage: str, ssm_stage: str | None, out: Path | None) -> None:
    """Synthesise one stage's CloudFormation template without deploying."""
    extra = ["--quiet"]
    if out is not None:
        extra += ["--output", str(out.resolve())]
    _run("synth", stage=stage, ssm_stage=ssm_stage, extra=extra)
