"""Continuous access evaluation, as the edges see it: the Shared Signals transmitter (stream
management, poll delivery), the receiver, and back-channel logout, built together by the
composition root (docs/continuous-access.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenward.oauth.ssf.backchannel import BackChannelLogout
from tokenward.oauth.ssf.delivery import Deliveries
from tokenward.oauth.ssf.events import EVENTS_SUPPORTED
from tokenward.oauth.ssf.poll import PollEndpoint
from tokenward.oauth.ssf.streams import METHODS, StreamManager
from tokenward.oauth.ssf.transmitter import Transmitter
from tokenward.services.ssf_receiver import SetReceiver

MANAGE_SCOPE = "ssf.manage"  # what a receiver's access token needs for the stream endpoints
CONFIGURATION = "/.well-known/ssf-configuration"
STREAMS = "/ssf/streams"
STATUS = "/ssf/status"
ADD_SUBJECT = "/ssf/subjects:add"
REMOVE_SUBJECT = "/ssf/subjects:remove"
VERIFY = "/ssf/verify"
POLL = "/ssf/poll"  # + /{stream_id}
RECEIVE = "/ssf/receive"


@dataclass(frozen=True)
class SharedSignals:
    issuer: str
    transmitter: Transmitter
    streams: StreamManager
    poll: PollEndpoint
    receiver: SetReceiver
    backchannel: BackChannelLogout
    deliveries: Deliveries

    async def start(self) -> None:
        await self.transmitter.start()  # starts the deliveries too

    async def stop(self) -> None:
        await self.transmitter.stop()

    def configuration(self) -> dict[str, Any]:
        """The transmitter's metadata (SSF 1.0 §7.1)."""
        base = self.issuer.rstrip("/")
        return {
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": f"{base}/jwks",
            "delivery_methods_supported": list(METHODS),
            "configuration_endpoint": base + STREAMS,
            "status_endpoint": base + STATUS,
            "add_subject_endpoint": base + ADD_SUBJECT,
            "remove_subject_endpoint": base + REMOVE_SUBJECT,
            "verification_endpoint": base + VERIFY,
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
            "default_subjects": "NONE",
            "events_supported": list(EVENTS_SUPPORTED),  # an extension: what streams may ask
        }


def poll_url(issuer: str, stream_id: str) -> str:
    return f"{issuer.rstrip('/')}{POLL}/{stream_id}"
