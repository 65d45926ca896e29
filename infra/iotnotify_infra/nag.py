"""cdk-nag acknowledgements, each with the reason it is acceptable here.

cdk-nag v3 runs as a CDK policy-validation plugin: an unacknowledged finding
fails synthesis. Constructs call :func:`suppress` next to the resource a
finding is about, so a reviewer reads the reason where the resource is
defined and nothing is waved through stack-wide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

__all__ = ["suppress"]


def suppress(
    construct: IConstruct,
    reasons: Mapping[str, str],
    *,
    applies_to: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Acknowledge the rules in ``reasons`` (rule id -> why) on ``construct``
    and its children.

    Rules that report one finding per offending value (``AwsSolutions-IAM5``)
    are acknowledged per finding: ``applies_to`` lists them (for example
    ``Resource::*``), so a new wildcard elsewhere in the same policy still fails.
    """
    acks: list[Acknowledgment] = []
    for rule, reason in reasons.items():
        findings = (applies_to or {}).get(rule)
        if findings:
            acks.extend(Acknowledgment(id=f"{rule}[{f}]", reason=reason) for f in findings)
        else:
            acks.append(Acknowledgment(id=rule, reason=reason))
    Validations.of(construct).acknowledge(*acks)
