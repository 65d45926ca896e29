"""API Gateway's ``AWS_IAM`` authorisation for the local API's IAM routes.

On AWS a route with IAM auth does two things before the function runs
(API Gateway developer guide, "Control access to a REST API with IAM
permissions"): it verifies the SigV4 signature (service ``execute-api``),
and it evaluates the caller's IAM policies for ``execute-api:Invoke`` on the
method's ARN, ``arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path}``
(the path without its leading slash). A valid signature alone is not
enough: only an identity granted that action (the ``notify-caller`` policy)
gets through; anyone else gets 403.

The signature check and the policy evaluation are the emulator's
(:mod:`iotnotify_emulator.sigv4`, :mod:`iotnotify_emulator.iam`), over the
same credential store, so IAM means the same thing on every local port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from iotnotify_emulator.credentials import CredentialStore
from iotnotify_emulator.iam import evaluate
from iotnotify_emulator.sigv4 import SignatureError, verify_header_signature

__all__ = ["IamAuthorizer", "IamRejected", "execute_api_arn"]

_SERVICE = "execute-api"


class IamRejected(Exception):
    """A request the IAM route refuses (API Gateway answers 403)."""


def execute_api_arn(
    *, region: str, account: str, api_id: str, stage: str, method: str, path: str
) -> str:
    """``arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path}``."""
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class IamAuthorizer:
    """``(method, url, headers, body, route path) -> caller ARN``; raises :class:`IamRejected`."""

    store: CredentialStore
    region: str
    account: str
    api_id: str
    stage: str

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, resource: str
    ) -> str:
        parts = urlsplit(url)
        try:
            credential = verify_header_signature(
                method=method,
                raw_path=parts.path,
                query=parse_qsl(parts.query, keep_blank_values=True),
                headers=headers,
                body=body,
                store=self.store,
                service=_SERVICE,
                region=self.region,
            )
        except SignatureError as exc:
            raise IamRejected(f"signature rejected: {exc.reason}") from exc
        arn = execute_api_arn(
            region=self.region,
            account=self.account,
            api_id=self.api_id,
            stage=self.stage,
            method=method,
            path=resource,
        )
        decision = evaluate(
            "execute-api:Invoke",
            arn,
            identity_policies=credential.identity_policies,
            session_policies=credential.session_policies,
        )
        if not decision.allowed:
            raise IamRejected(
                f"{credential.principal_arn or credential.principal_id} is not authorized "
                f"to perform execute-api:Invoke on {arn} ({decision.reason})"
            )
        return str(credential.principal_arn or credential.principal_id)
