"""The SDK is the bottom layer: what a subscriber installs carries no server code.

Issue 11 §1: ``client/iotnotify`` imports nothing from the handlers, the
emulator or the offline stack, and importing the subscriber or the CLI
loads neither boto3/botocore (about 30 MiB of RSS) nor moto, aiohttp's
server, the emulator or the handlers.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "client" / "iotnotify"
UPPER_LAYERS = ("iotnotify_handlers", "iotnotify_emulator", "iotnotify_local")
HEAVY = (
    "boto3",
    "botocore",
    "moto",
    "aiohttp.web",
    "iotnotify_emulator",
    "iotnotify_local",
    "iotnotify_handlers",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter: what a new process loads is the point
    (this test process has boto3, moto and the emulator loaded already)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_sdk_source_never_imports_an_upper_layer() -> None:
    sources = sorted(SDK.rglob("*.py"))
    assert len(sources) > 10  # the walk really found the package
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sources
        for name in _imported_modules(path)
        if name.split(".")[0] in UPPER_LAYERS
    }
    assert offenders == set()


# What the SDK may import besides the standard library, by the install that
# brings it (pyproject.toml): the core's three small packages, and the
# extras' packages, which the SDK imports only in the commands that need them.
CORE_PACKAGES = {"click", "paho", "ulid"}
EXTRA_PACKAGES = {
    "aws": {"boto3", "botocore", "urllib3", "mypy_boto3_iot"},
    "tray": {"pystray", "PIL", "Xlib", "gi", "keyring", "desktop_notifier", "jeepney"},
}


def test_the_sdk_imports_only_the_core_packages_and_its_extras() -> None:
    """No table renderer or other large package slips into the core install:
    rich and what it pulls in (pygments, markdown-it-py) were about 13 MB,
    six times the core's other dependencies."""
    imported = {
        name.split(".")[0] for path in SDK.rglob("*.py") for name in _imported_modules(path)
    }
    third_party = imported - set(sys.stdlib_module_names) - {"iotnotify"}
    allowed = CORE_PACKAGES.union(*EXTRA_PACKAGES.values())
    assert third_party - allowed == set()
    assert "rich" not in third_party


def test_the_static_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from iotnotify_local.stack import run_local\n")
    assert "iotnotify_local.stack" in _imported_modules(module)


@pytest.mark.parametrize(
    "modules",
    [
        ("iotnotify.subscriber",),
        ("iotnotify.cli",),
        ("iotnotify.api_client", "iotnotify.auth", "iotnotify.subscriber", "iotnotify.cli"),
    ],
)
def test_importing_the_subscriber_side_loads_no_heavy_module(modules: tuple[str, ...]) -> None:
    # A fresh interpreter: this test process has boto3 and moto loaded already.
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    answer = _python(code)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == []


def test_listen_and_tray_help_load_no_heavy_module() -> None:
    # Running a command (not just importing) must not pull the layers in either.
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from iotnotify.cli import cli\n"
        "for args in (['listen', '--help'], ['tray', '--help'], ['--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    answer = _python(code)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == []


def test_the_always_on_clients_leave_start_up_only_modules_unloaded() -> None:
    """Issue 11 §2: ``difflib`` (command-name suggestions) and ``getpass``
    with ``termios`` (one user name for the client id) stayed resident in
    every ``iotnotify listen`` and ``tray``, about 0.3 MiB."""
    code = (
        "import json, sys\n"
        "import iotnotify.cli, iotnotify.cli_client, iotnotify.subscriber\n"
        "from iotnotify.tray import app\n"
        "suffix = iotnotify.subscriber.device_suffix('tray')\n"
        "print(json.dumps([m for m in ('difflib', 'getpass', 'termios') if m in sys.modules]))\n"
    )
    answer = _python(code)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == []


def test_the_client_id_names_the_same_os_user_as_getpass(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    from iotnotify.subscriber import _os_user

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert _os_user() == getpass.getuser()  # from the password database
    monkeypatch.setenv("USERNAME", "someone")
    monkeypatch.setenv("USER", "player")
    assert _os_user() == getpass.getuser() == "player"


def test_the_emulator_module_on_the_core_install_names_the_local_extra() -> None:
    # The core install ships iotnotify_emulator without aiohttp (the [local] extra)
    code = (
        "import runpy, sys\n"
        "sys.modules['aiohttp'] = None\n"
        "sys.argv = ['iotnotify_emulator', '--help']\n"
        "runpy.run_module('iotnotify_emulator', run_name='__main__')\n"
    )
    done = _python(code)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'iotnotify[local]'" in done.stderr
    assert "aiohttp" in done.stderr


def test_the_emulator_package_loads_its_exports_on_first_use() -> None:
    import iotnotify_emulator

    assert {
        name: getattr(iotnotify_emulator, name).__name__ for name in ("Policy", "Emulator")
    } == {
        "Policy": "Policy",
        "Emulator": "Emulator",
    }
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = iotnotify_emulator.Nope  # type: ignore[attr-defined]


@pytest.mark.parametrize("missing", ["boto3", "botocore"])
def test_the_publisher_on_the_core_install_names_the_aws_extra(missing: str) -> None:
    # The README's publisher example, run where boto3 (the [aws] extra) is missing
    done = _python(
        f"import sys\nsys.modules[{missing!r}] = None\nfrom iotnotify.publisher import Publisher\n"
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ModuleNotFoundError: iotnotify.publisher needs the [aws] extra ({missing} is not "
        "installed): pip install 'iotnotify[aws]'"
    )
