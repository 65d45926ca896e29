"""Web hosting: the browser page on a private bucket behind CloudFront.

The page is a static build (``web/dist``). It learns where everything is
from a ``config.json`` generated at deploy time (API URL, region, IoT
endpoint, Cognito ids), so one build serves every stage. When ``web/dist``
has not been built, a placeholder page is generated into the cloud assembly
instead: synthesis (and the infra tests) must not depend on the web build.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aws_cdk import Duration, RemovalPolicy, Stage
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from iotnotify_infra.config import StageConfig
from iotnotify_infra.lambda_asset import REPO_ROOT
from iotnotify_infra.nag import suppress

__all__ = ["WEB_DIST", "WebHosting", "WebSite", "placeholder_site"]

WEB_DIST: Final = REPO_ROOT / "web" / "dist"

_PLACEHOLDER: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
<p>The web page was not built when this stage was synthesised
(<code>web/dist</code> was missing). Build it and deploy again; the API and
<a href="config.json">config.json</a> are live.</p></body></html>
"""


def placeholder_site(outdir: Path, *, stage: str) -> Path:
    """Write a one-page site into the cloud assembly and return its folder."""
    # One folder per stage: two stages may share one cloud assembly.
    folder = outdir / f"iotnotify-web-placeholder-{stage}"
    title = f"iotnotify ({stage})"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(_PLACEHOLDER.format(title=html.escape(title)))
    return folder


class WebSite(Construct):
    """A private S3 bucket and a CloudFront distribution reading it through OAC.

    Every answer carries ``headers`` (a response headers policy): the page's
    meta Content-Security-Policy cannot forbid framing, since browsers ignore
    ``frame-ancestors`` in a ``<meta>`` (CSP Level 3, "frame-ancestors"), so
    without ``frame-ancestors 'none'`` / ``X-Frame-Options: DENY`` any site
    could frame the signed-in page and trick clicks onto it; ``nosniff``,
    ``no-referrer`` and HSTS as CloudFront's managed SecurityHeadersPolicy
    has them (CloudFront developer guide, "Use managed response headers
    policies"). ``/config.json`` (the stage's API and pool ids) is not
    cached at the edge (managed CachingDisabled policy), so a redeploy's
    values are read at once, as ``iotnotify local`` serves it (no-store).
    """

    bucket: s3.Bucket
    distribution: cloudfront.Distribution
    headers: cloudfront.ResponseHeadersPolicy
    origin: str

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
            # Throw-away stages must delete cleanly; a non-empty bucket would
            # make `iotnotify destroy` fail.
            auto_delete_objects=not config.retain_data,
        )
        self.headers = cloudfront.ResponseHeadersPolicy(
            self,
            "Headers",
            comment=f"{config.stack_name} web page: no framing, no sniffing, no referrer",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy="frame-ancestors 'none'", override=True
                ),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365),
                    include_subdomains=False,
                    override=True,
                ),
            ),
        )
        origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.stack_name} web page",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
            ),
            additional_behaviors={
                "/config.json": cloudfront.BehaviorOptions(
                    origin=origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    response_headers_policy=self.headers,
                )
            },
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        self.origin = f"https://{self.distribution.distribution_domain_name}"
        suppress(
            self.bucket,
            {
                "AwsSolutions-S1": (
                    "Static site content only; CloudFront is the sole reader (OAC) and "
                    "a log bucket per ephemeral stage would outlive it."
                )
            },
        )
        suppress(
            self.distribution,
            {
                "AwsSolutions-CFR1": "A public notification page: no geo restriction.",
                "AwsSolutions-CFR2": (
                    "No WAF: a fixed monthly fee per stage for a static page; the API "
                    "has its own throttling and authorisation."
                ),
                "AwsSolutions-CFR3": (
                    "Access logs need a legacy ACL-enabled log bucket per stage; the "
                    "page is static and carries no user data."
                ),
                "AwsSolutions-CFR4": (
                    "Uses the default *.cloudfront.net certificate, whose minimum TLS "
                    "version CloudFront fixes; a custom domain would set TLSv1.2_2021."
                ),
            },
        )


class WebHosting(Construct):
    """Uploads the page and its generated ``config.json`` to a :class:`WebSite`."""

    deployment: s3deploy.BucketDeployment
    uses_placeholder: bool

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        site: WebSite,
        runtime_config: Mapping[str, Any],
        dist: Path = WEB_DIST,
    ) -> None:
        super().__init__(scope, construct_id)
        self.uses_placeholder = not (dist / "index.html").is_file()
        if self.uses_placeholder:
            outdir = Path(Stage.of(self).outdir)  # type: ignore[union-attr]
            dist = placeholder_site(outdir, stage=config.stage)
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            destination_bucket=site.bucket,
            sources=[
                s3deploy.Source.asset(str(dist)),
                # Values are CloudFormation tokens resolved at deploy time.
                s3deploy.Source.json_data("config.json", dict(runtime_config)),
            ],
            distribution=site.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
        )
