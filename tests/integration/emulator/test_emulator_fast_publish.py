"""The publisher's lean path (signed_http) against the emulator: SigV4 verified, over TLS.

The emulator checks the signature as AWS does, so a publish that reaches a
subscriber was signed right; its HTTPS endpoint has a certificate from its
own CA, so the client's CA bundle (``verify=``) is what decides whether TLS
is trusted.
"""

from __future__ import annotations

import asyncio

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import SSLError

from iotnotify.iot_data import FastPublish
from iotnotify.signed_http import SignedEndpoint
from iotnotify_emulator.testing import ALLOW_ALL, Harness


async def test_a_fast_publish_over_tls_with_the_clients_ca_bundle_reaches_a_subscriber(
    world: Harness,
) -> None:
    # Given a subscriber on a topic, and FastPublish over the publisher's
    # boto3 client for the emulator's HTTPS endpoint, its CA as ``verify``
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    topic = world.topic_of("alice")
    await watcher.subscribe(topic)
    publisher = world.publisher()
    client = world.iot_data(publisher, tls=True)
    keys = Credentials(
        publisher.access_key_id, publisher.secret_access_key, publisher.session_token
    )
    assert SignedEndpoint(client, lambda: keys).lean  # no proxy: the lean connections send
    fast = FastPublish(client, lambda: keys)

    # When it publishes
    await asyncio.to_thread(fast.publish, topic=topic, payload=b'{"title":"Your turn"}')

    # Then the emulator verified the signature and delivered the message
    message = await watcher.next_publish()
    assert (message.topic, message.payload) == (topic, b'{"title":"Your turn"}')
    fast.close()


async def test_a_fast_publish_to_a_certificate_outside_the_ca_bundle_is_an_ssl_error(
    world: Harness,
) -> None:
    # Given a client for the same HTTPS endpoint with the default CA bundle,
    # which does not hold the emulator's CA
    publisher = world.publisher()
    client = boto3.client(
        "iot-data",
        region_name=world.region,
        endpoint_url=world.emulator.data_url_tls,
        aws_access_key_id=publisher.access_key_id,
        aws_secret_access_key=publisher.secret_access_key,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    keys = Credentials(publisher.access_key_id, publisher.secret_access_key)
    fast = FastPublish(client, lambda: keys)

    # Then publishing fails as botocore fails: an SSLError, nothing sent
    with pytest.raises(SSLError):
        await asyncio.to_thread(fast.publish, topic=world.topic_of("alice"), payload=b"x")
    fast.close()
