"""``iotnotify local --data-dir DIR``: what survives a restart of the offline stack.

An app built on the offline stack keeps its users, their passwords and
``sub`` ids, the pool and client ids, the inbox, the rooms, the API key and
the CA that clients trust from one run to the next, as it would on AWS.

What is kept, and how:

* **moto's state** (Cognito, IAM, STS, DynamoDB, SQS, SSM: every service
  :func:`~iotnotify_local.provision.provision` uses) is moto's own backend
  objects, pickled. moto keeps each service's state in memory in a
  ``BackendDict`` (account -> region -> backend object; ``moto.backends.get_backend``)
  and has no persistence of its own; pickling those objects is what moto's
  maintainers suggest for it (getmoto/moto issue 1069; issue 9755 discusses
  pickled ``BackendDict`` snapshots tagged with the moto version, as here)
  and what LocalStack's persistence did with moto, and it keeps everything moto
  knows (users who signed up on the page, their passwords, refresh tokens,
  the pool's signing key, DynamoDB items and their TTLs, queues and their
  messages) without a dump format per service. moto's objects hold a few
  things ``pickle`` refuses (locks and conditions, RSA keys, a
  ``defaultdict`` with a lambda factory); :class:`_MotoPickler` replaces
  them by equivalent picklable recipes.
* **what ``provision`` returned** (:class:`~iotnotify_local.provision.LocalResources`:
  ids, ARNs, queue URLs, the demo users and the publisher's key) as JSON,
  so a restored stack does not provision again.
* **the CA** of the emulator's ``wss://`` endpoint (``DIR/ca``): the
  emulator reuses a CA it finds there (see ``iotnotify_emulator.tls``).

State is saved after start-up and on a clean stop, and every
:data:`AUTOSAVE_SECONDS` in between, so a crash loses at most that much.
DynamoDB requests wait while a snapshot is pickled
(:func:`~iotnotify_local.moto_dynamodb.dynamodb_paused`), so a saved state
holds all of a transaction or none of it.
A directory saved by other provisioning code (``provision.py``, the
naming or the IAM policies changed) or another moto version is refused
with a hint to use ``--fresh``: restoring it would run today's handlers
against yesterday's resources. ``--fresh`` first removes what a stack saved
there, and nothing else: the folder may hold the user's own files too.
One stack at a time may use a directory (an ``flock`` on ``DIR/lock``).
The names a stack uses there (``lock``, ``ca/``) may be taken by the
user's own files too: a stack recognises its own by what it wrote (the
lock file starts with :data:`LOCK_MARK`, the CA folder holds
:data:`CA_MARK_FILE`) and refuses to start rather than overwrite, reuse
or, with ``--fresh``, delete anything else of those names.
Files are created owner-only, and a pickle is loaded only if this user owns
it and nobody else can write it: loading a pickle runs code, so it must
come from this user's own stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import stat
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Final

from iotnotify.naming import ResourceNames
from iotnotify_local.moto_dynamodb import dynamodb_paused
from iotnotify_local.provision import DemoUser, LocalResources, PublisherKeys

__all__ = [
    "AUTOSAVE_SECONDS",
    "CA_MARK_FILE",
    "DEFAULT_DATA_DIR",
    "LOCK_MARK",
    "PERSISTED_SERVICES",
    "DataDir",
    "DataDirError",
]

DEFAULT_DATA_DIR: Final = Path(".iotnotify") / "data"
# moto service names (``moto.backends.get_backend``) whose state is kept. A
# service that provision() starts using must be added here.
PERSISTED_SERVICES: Final = ("cognito-idp", "iam", "sts", "dynamodb", "sqs", "ssm")
AUTOSAVE_SECONDS: Final = 30.0
_FORMAT: Final = 1
_MOTO_FILE: Final = "moto.pickle"
_RESOURCES_FILE: Final = "resources.json"
_LOCK_FILE: Final = "lock"
#: How every lock file a stack writes begins; the pid that holds it follows,
#: padded to one width, so rewriting the pid in place never truncates the file
#: (the mark is there from the file's creation on, whatever crashes).
LOCK_MARK: Final = "iotnotify local data-directory lock; pid "
_PID_WIDTH: Final = 10
_CA_DIR: Final = "ca"
#: The file a stack writes into the CA folder it made (``DIR/ca``).
CA_MARK_FILE: Final = "iotnotify-ca.txt"
_CA_MARK: Final = (
    b"`iotnotify local` keeps the CA of its emulator's wss:// endpoint in this folder; "
    b"`iotnotify local --fresh` removes it.\n"
)
# The saved state (--fresh removes these, the CA's files and nothing else).
_SAVED_FILES: Final = (_MOTO_FILE, _RESOURCES_FILE)
# A snapshot taken while a request mutates a dict can fail with RuntimeError
# ("dictionary changed size during iteration"); the next try usually passes.
_SNAPSHOT_TRIES: Final = 5


class DataDirError(Exception):
    """The data directory is in use, unsafe, or holds state this version cannot load."""


def _new_lock() -> Any:
    return threading.Lock()


def _new_rlock() -> Any:
    return threading.RLock()


def _load_private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


def _load_public_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem)


_LOCK_TYPE: Final = type(threading.Lock())
_RLOCK_TYPE: Final = type(threading.RLock())


class _MotoPickler(pickle.Pickler):
    """A pickler for moto's backend objects (see the module docstring)."""

    def reducer_override(self, obj: Any) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.types import (
            PrivateKeyTypes,
            PublicKeyTypes,
        )

        # Locks guard in-process access only: a restored object gets new ones.
        if isinstance(obj, _LOCK_TYPE):
            return _new_lock, ()
        if isinstance(obj, _RLOCK_TYPE):
            return _new_rlock, ()
        if isinstance(obj, threading.Condition):
            return threading.Condition, ()
        if isinstance(obj, PrivateKeyTypes):  # type: ignore[arg-type]
            pem = obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _load_private_key, (pem,)
        if isinstance(obj, PublicKeyTypes):  # type: ignore[arg-type]
            pem = obj.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return _load_public_key, (pem,)
        if isinstance(obj, defaultdict):
            # Two things pickle's own defaultdict recipe gets wrong in moto: a
            # lambda factory (SSM's ``defaultdict(lambda: defaultdict(dict))``)
            # cannot be pickled, and a subclass with its own __init__ (SSM's
            # ParameterDict(account_id, region_name)) cannot be rebuilt by
            # calling the class with the factory.
            factory = obj.default_factory
            if factory is not None and "<locals>" in getattr(factory, "__qualname__", ""):
                factory = _describe_factory(factory)
            state = dict(vars(obj)) if hasattr(obj, "__dict__") else None
            return _new_defaultdict, (type(obj), factory), state, None, iter(obj.items())
        return NotImplemented


def _new_defaultdict(cls: type[defaultdict[Any, Any]], factory: Any) -> defaultdict[Any, Any]:
    obj = cls.__new__(cls)
    defaultdict.__init__(obj, factory)
    return obj


def _describe_factory(factory: Callable[[], Any]) -> Callable[[], Any]:
    """A picklable factory that builds what the lambda ``factory`` builds."""
    sample = factory()
    if isinstance(sample, defaultdict) and sample.default_factory is not None:
        return partial(defaultdict, _describe_factory(sample.default_factory))
    if type(sample) in (dict, list, set, int, str):
        return type(sample)
    raise DataDirError(f"cannot persist a defaultdict whose factory builds {type(sample)!r}")


def _snapshot() -> bytes:
    from moto.backends import get_backend

    for attempt in range(_SNAPSHOT_TRIES):
        state: dict[str, dict[str, dict[str, Any]]] = {}
        for service in PERSISTED_SERVICES:
            backends: Any = get_backend(service)
            state[service] = {
                account: dict(dict.items(regions)) for account, regions in dict.items(backends)
            }
        buffer = io.BytesIO()
        try:
            # DynamoDB held still: never half of a transaction in the file
            # (moto applies a transaction's actions one by one; moto_dynamodb).
            with dynamodb_paused():
                # One pickle for all services keeps objects shared between them shared.
                _MotoPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
        except RuntimeError:
            if attempt == _SNAPSHOT_TRIES - 1:
                raise
            continue
        return buffer.getvalue()
    raise AssertionError("unreachable")  # pragma: no cover


def _restore(state: dict[str, dict[str, dict[str, Any]]]) -> None:
    from moto.backends import get_backend

    for service, accounts in state.items():
        backends: Any = get_backend(service)  # type: ignore[call-overload]
        for account, regions in accounts.items():
            live = backends[account]  # creates the AccountSpecificBackend
            for region, backend in regions.items():
                _drop_expired_sessions(backend)
                live[region] = backend


def _drop_expired_sessions(backend: Any) -> None:
    # Every GET /token assumes the subscriber role, and moto's STS keeps every
    # session forever; expired ones would only make the kept state (and the
    # emulator's credential lookups) grow from run to run.
    sessions = getattr(backend, "assumed_roles", None)
    if isinstance(sessions, list):
        from moto.core.utils import utcnow

        now = utcnow()
        sessions[:] = [s for s in sessions if getattr(s, "expiration", now) > now]


def _provision_fingerprint() -> str:
    """A hash of the code that decides what exists in moto (and how it is allowed)."""
    from iotnotify import naming, policies
    from iotnotify_local import provision

    digest = hashlib.sha256()
    for module in (provision, naming, policies):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def _resources_json(resources: LocalResources) -> dict[str, Any]:
    raw = asdict(resources)
    raw["names"] = {
        "app": resources.names.app,
        "stage": resources.names.stage,
        "ssm_stage": resources.names.ssm_stage,
    }
    return raw


def _resources_from_json(raw: dict[str, Any]) -> LocalResources:
    values = dict(raw)
    values["names"] = ResourceNames(**values["names"])
    values["users"] = tuple(DemoUser(**user) for user in values["users"])
    values["publisher"] = PublisherKeys(**values["publisher"])
    return LocalResources(**values)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # atomic: a crash mid-save leaves the previous snapshot


def _lock(handle: Any) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False if another holds it."""
    if sys.platform == "win32":  # no flock; one stack per directory is not enforced there
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(handle: Any) -> None:
    if sys.platform != "win32":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _lock_record(pid: int) -> bytes:
    return f"{LOCK_MARK}{pid:>{_PID_WIDTH}}\n".encode("ascii")


def _lock_holder(content: bytes) -> str | None:
    """The pid a stack's lock file names ("" if none yet), or None if a stack did not write it.

    Besides today's record, a lock of the versions before it (only a pid)
    counts as a stack's: their data directories still open.
    """
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith(LOCK_MARK):
        pid = text[len(LOCK_MARK) :].strip()
        return pid if pid.isdigit() else None
    legacy = text.strip()
    return legacy if legacy.isdigit() and len(legacy) <= _PID_WIDTH else None


def _create_lock_file(path: Path) -> None:
    """Create ``path`` holding a stack's lock record, in one step (never empty).

    Written under a unique name and hard-linked into place: a link never
    replaces an existing file (a concurrent stack's, or the user's).
    """
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_lock_record(os.getpid()))
        with contextlib.suppress(FileExistsError):  # another stack was first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _read_start(handle: Any) -> bytes:
    """The first 4 KB of an open lock file (more than any lock record)."""
    handle.seek(0)
    data: bytes = handle.read(4096)
    return data


def _open_lock_file(path: Path) -> Any:
    """Open the stack's lock file at ``path`` (created if absent) for reading and writing.

    Raises :class:`DataDirError` if something else of that name is there: a
    user's own file named ``lock`` was overwritten with a pid.
    """
    refuse = (
        f"{path} is not the lock file of an `iotnotify local` data directory ({{why}}); "
        "it is left as it is: give --data-dir a folder without a file of your own named "
        "'lock' (or delete it if a crashed older stack left it)"
    )
    try:
        try:
            info = path.lstat()
        except FileNotFoundError:
            _create_lock_file(path)
            info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise DataDirError(refuse.format(why="a symbolic link"))
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise DataDirError(refuse.format(why=kind))
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise DataDirError(f"cannot use {path.parent} as the data directory: {exc}") from exc
    handle = os.fdopen(fd, "r+b", buffering=0)
    if _lock_holder(_read_start(handle)) is None:
        handle.close()
        raise DataDirError(refuse.format(why="it holds something else"))
    return handle


def _check_owned(path: Path) -> None:
    info = path.stat()
    owner_ok = sys.platform == "win32" or info.st_uid == os.getuid()
    if not owner_ok or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise DataDirError(
            f"{path} is not owned by this user or is writable by others; it is not "
            "loaded (a pickle runs code). Use --fresh or another --data-dir."
        )


class DataDir:
    """One stack's data directory: locked while open, saved on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_handle: Any = None
        self._save_lock = threading.Lock()
        self._autosave_stop = threading.Event()
        self._autosave: threading.Thread | None = None

    @property
    def ca_dir(self) -> Path:
        """Where the emulator keeps its CA (``ca.pem``, ``ca.key``) and server certificate."""
        return self.path / _CA_DIR

    # --- open / close ---------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, fresh: bool = False) -> DataDir:
        """Create (0700) and lock ``path``; with ``fresh``, empty it first.

        Raises :class:`DataDirError` if another stack holds the directory, or
        if ``path/lock`` or ``path/ca`` exist and a stack did not write them
        (nothing of them is changed then).
        """
        data = cls(path)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DataDirError(f"cannot use {path} as the data directory: {exc}") from exc
        handle = _open_lock_file(path / _LOCK_FILE)
        if not _lock(handle):
            holder = _lock_holder(_read_start(handle)) or "another process"
            handle.close()
            raise DataDirError(
                f"the data directory {path} is in use by another `iotnotify local` "
                f"(pid {holder}); stop it, or give this one its own --data-dir"
            )
        data._lock_handle = handle
        try:
            # In place and at one width: the file never lacks the mark. An
            # older stack's shorter record (a bare pid) is cut after it.
            record = _lock_record(os.getpid())
            handle.seek(0)
            handle.write(record)
            handle.truncate(len(record))
            data._claim_ca_dir()
            if fresh:
                data._remove_saved_state()
        except BaseException:
            data.close()
            raise
        return data

    def _claim_ca_dir(self) -> None:
        """Make ``ca/`` (0700, with :data:`CA_MARK_FILE`), or check that a stack made it.

        A ``ca/`` of the user's own (no mark) was used as the emulator's: a
        ``ca.pem`` and ``ca.key`` found there signed the server certificate.
        One made by a stack before the mark existed (only the CA's files,
        ``ca.pem`` the emulator's CA) gets the mark. Raises :class:`DataDirError`
        for anything else.
        """
        from iotnotify_emulator.tls import CA_FILE_NAME, CERTIFICATE_FILE_NAMES, is_emulator_ca

        ca_dir, mark = self.ca_dir, self.ca_dir / CA_MARK_FILE
        refuse = (
            f"{ca_dir} was not made by `iotnotify local` ({{why}}); it is left as it is "
            "and not used as the emulator's CA: give --data-dir a folder without a "
            "'ca' of your own"
        )
        try:
            try:
                info = ca_dir.lstat()
            except FileNotFoundError:
                ca_dir.mkdir(mode=0o700)
                _write_private(mark, _CA_MARK)
                return
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise DataDirError(
                    refuse.format(why="a symbolic link" if stat.S_ISLNK(info.st_mode) else "a file")
                )
            if mark.is_file() and not mark.is_symlink():
                if mark.read_bytes() == _CA_MARK:
                    return
                raise DataDirError(refuse.format(why=f"{CA_MARK_FILE} holds something else"))
            names = {entry.name for entry in ca_dir.iterdir()}
            ca_file = ca_dir / CA_FILE_NAME
            made_before_the_mark = (
                names <= set(CERTIFICATE_FILE_NAMES)
                and ca_file.is_file()
                and not ca_file.is_symlink()
                and is_emulator_ca(ca_file.read_bytes())
            )
            if not made_before_the_mark:
                raise DataDirError(refuse.format(why=f"it has no {CA_MARK_FILE}"))
            _write_private(mark, _CA_MARK)
        except OSError as exc:
            raise DataDirError(f"cannot use {ca_dir} for the emulator's CA: {exc}") from exc

    def _remove_saved_state(self) -> None:
        """What ``--fresh`` discards: the files a stack writes here, and only those.

        ``--data-dir`` may name a folder that also holds the user's own files
        (``--data-dir .``, ``~``): emptying the whole folder deleted them. The
        CA folder is the stack's (:meth:`_claim_ca_dir` ran first); its
        mark stays, so it stays the stack's.
        """
        from iotnotify_emulator.tls import CERTIFICATE_FILE_NAMES

        files = [self.path / f"{name}{tail}" for name in _SAVED_FILES for tail in ("", ".tmp")]
        files += [self.ca_dir / name for name in CERTIFICATE_FILE_NAMES]
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()

    def close(self) -> None:
        """Stop autosaving and release the lock (does not save)."""
        self.stop_autosave()
        if self._lock_handle is not None:
            _unlock(self._lock_handle)
            self._lock_handle.close()
            self._lock_handle = None

    # --- load / save ----------------------------------------------------------------

    def load(self, *, app: str, stage: str, region: str) -> LocalResources | None:
        """Restore moto's state into this process; the saved resources, or None if empty.

        Call before moto serves anything. Raises :class:`DataDirError` if the
        saved state is for another app/stage/region or cannot be loaded.
        """
        moto_file = self.path / _MOTO_FILE
        resources_file = self.path / _RESOURCES_FILE
        if not moto_file.exists() or not resources_file.exists():
            return None
        hint = (
            "start with --fresh to discard it (`iotnotify local --fresh`, or "
            f"`make run ARGS=--fresh`), or use another --data-dir than {self.path}"
        )
        _check_owned(moto_file)
        try:
            saved = json.loads(resources_file.read_text(encoding="utf-8"))
            header, raw = saved["header"], saved["resources"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataDirError(f"cannot read {resources_file}: {exc}; {hint}") from exc
        import moto

        wanted = {"format": _FORMAT, "app": app, "stage": stage, "region": region}
        found = {key: header.get(key) for key in wanted}
        if found != wanted:
            raise DataDirError(f"the data in {self.path} is for {found}, not {wanted}; {hint}")
        made_by = (header.get("provision"), header.get("moto"))
        if made_by != (_provision_fingerprint(), moto.__version__):
            raise DataDirError(
                f"the data in {self.path} was saved by another version of the offline stack "
                f"(provisioning {made_by[0]}, moto {made_by[1]}; now {_provision_fingerprint()}, "
                f"moto {moto.__version__}); {hint}"
            )
        try:
            resources = _resources_from_json(raw)
            state = pickle.loads(moto_file.read_bytes())  # noqa: S301 - our own file, checked above
            _restore(state)
        except Exception as exc:  # whatever an older moto's objects raise when unpickled
            raise DataDirError(
                f"cannot restore the saved state in {self.path} (saved with moto "
                f"{header.get('moto')}): {exc!r}; {hint}"
            ) from exc
        return resources

    def save(self, resources: LocalResources, *, app: str, stage: str, region: str) -> None:
        """Write moto's state and ``resources`` (each file replaced atomically).

        Raises :class:`DataDirError` if moto's state cannot be pickled or the
        files cannot be written.
        """
        import moto

        with self._save_lock:
            try:
                blob = _snapshot()
            except Exception as exc:  # an object of a newer moto that pickle refuses
                raise DataDirError(f"cannot save moto's state to {self.path}: {exc!r}") from exc
            header = {
                "format": _FORMAT,
                "app": app,
                "stage": stage,
                "region": region,
                "moto": moto.__version__,
                "provision": _provision_fingerprint(),
            }
            document = {"header": header, "resources": _resources_json(resources)}
            try:
                _write_private(self.path / _MOTO_FILE, blob)
                _write_private(
                    self.path / _RESOURCES_FILE, json.dumps(document, indent=2).encode("utf-8")
                )
            except OSError as exc:
                raise DataDirError(f"cannot write to {self.path}: {exc}") from exc

    # --- autosave -------------------------------------------------------------------

    def start_autosave(
        self, save: Callable[[], None], on_error: Callable[[str], None], *, every: float
    ) -> None:
        """Call ``save`` every ``every`` seconds on a daemon thread until stopped."""

        def run() -> None:
            while not self._autosave_stop.wait(every):
                try:
                    save()
                except Exception as exc:  # keep serving; say why the save failed
                    on_error(f"saving {self.path} failed: {exc!r}")

        self._autosave = threading.Thread(target=run, name="iotnotify-autosave", daemon=True)
        self._autosave.start()

    def stop_autosave(self) -> None:
        self._autosave_stop.set()
        if self._autosave is not None:
            self._autosave.join(timeout=30)
            self._autosave = None
