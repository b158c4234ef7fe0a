"""Passkeys (WebAuthn Level 3) with the `webauthn` library: registration and authentication
ceremonies for discoverable credentials with user verification required, so a passkey alone
is a phishing-resistant multi-factor sign-in (core/assurance.py PHR).

The challenge of each ceremony travels in the page's sealed interaction (oauth/interaction.py),
good once; the relying party is the issuer's host and the only accepted origin is the issuer's.
The signature counter is stored with a compare-and-set: of two sign-ins that read one counter
only one is accepted, and a counter that does not grow (a cloned authenticator) is refused by
the library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
import webauthn
from webauthn.helpers import (
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tokenward.core.ports import Passkeys
from tokenward.core.records import PasskeyCredential, UserRecord
from tokenward.tokens.b64 import Base64Error, b64url_decode

log = structlog.get_logger(__name__)
MAX_CREDENTIAL_JSON = 8 * 1024
MAX_PASSKEYS = 10  # per user
# What the library raises on input it cannot use; its CBOR and key decoders also raise plain
# IndexError/KeyError (LookupError) on truncated data.
_REFUSED = (WebAuthnException, ValueError, LookupError, TypeError)
UNUSABLE = (
    "this passkey can no longer be used here: use another passkey or your authenticator app, "
    "or ask an administrator to reset your second factors"
)


@dataclass(frozen=True, slots=True)
class Ceremony:
    options: str  # JSON for navigator.credentials.create/get (base64url byte fields)
    challenge: str  # base64url, kept in the sealed interaction


class PasskeyError(Exception):
    """The browser's answer does not verify; the message is safe to show."""


def _raw_id(credential: PasskeyCredential) -> bytes | None:
    """The stored credential id's bytes; None (logged) for a corrupted row, left out of the
    exclusion list rather than failing the page."""
    try:
        return b64url_decode(credential.credential_id)
    except Base64Error:
        pass
    log.error("passkey_unusable", user_id=credential.user_id, reason="credential_id")
    return None


def _key_usable(credential: PasskeyCredential) -> bool:
    """Whether the stored COSE public key decodes to a key; logged (no key material) if not."""
    try:
        decoded_public_key_to_cryptography(decode_credential_public_key(credential.public_key))
    except _REFUSED as exc:
        reason = type(exc).__name__
    else:
        return True
    log.error("passkey_unusable", user_id=credential.user_id, reason=reason)
    return False


def _challenge_bytes(challenge: str) -> bytes:
    try:
        return b64url_decode(challenge)
    except Base64Error:
        raise PasskeyError("the passkey request expired; try again") from None


class PasskeyService:
    def __init__(
        self, passkeys: Passkeys, issuer: str, clock: Callable[[], float] = time.time
    ) -> None:
        parts = urlsplit(issuer)
        self.rp_id = parts.hostname or "localhost"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._passkeys = passkeys
        self._clock = clock

    def registration(self, user: UserRecord, existing: list[PasskeyCredential]) -> Ceremony:
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id,
            rp_name="tokenward",
            user_name=user.username,
            user_id=user.user_id.encode(),  # the user handle: who a discoverable key signs in
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=raw) for c in existing if (raw := _raw_id(c))
            ],
        )
        return Ceremony(options_to_json(options), bytes_to_base64url(options.challenge))

    async def register(
        self, user: UserRecord, credential: str, challenge: str, name: str
    ) -> PasskeyCredential:
        if len(credential) > MAX_CREDENTIAL_JSON:
            raise PasskeyError("the passkey answer is too large")
        if len(await self._passkeys.of_user(user.user_id)) >= MAX_PASSKEYS:
            raise PasskeyError(f"at most {MAX_PASSKEYS} passkeys per account")
        try:
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=_challenge_bytes(challenge),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                require_user_verification=True,
            )
        except _REFUSED:
            raise PasskeyError("the passkey could not be verified") from None
        record = PasskeyCredential(
            credential_id=bytes_to_base64url(verified.credential_id),
            user_id=user.user_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            created_at=self._clock(),
            name=(name.strip() or "passkey")[:64],
        )
        if await self._passkeys.get(record.credential_id) is not None:
            raise PasskeyError("this passkey is registered already")
        await self._passkeys.add(record)
        return record

    def authentication(self) -> Ceremony:
        """Options for a discoverable credential: no list of ids, so the page names no user."""
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id, user_verification=UserVerificationRequirement.REQUIRED
        )
        return Ceremony(options_to_json(options), bytes_to_base64url(options.challenge))

    async def authenticate(
        self, credential: str, challenge: str, expected_user: str | None = None
    ) -> str:
        """The user id the verified assertion signs in; `expected_user`: it must be this one
        (a step-up of a signed-in session)."""
        if len(credential) > MAX_CREDENTIAL_JSON:
            raise PasskeyError("the passkey answer is too large")
        try:
            parsed = webauthn.helpers.parse_authentication_credential_json(credential)
        except _REFUSED:
            raise PasskeyError("the passkey could not be verified") from None
        stored = await self._passkeys.get(bytes_to_base64url(parsed.raw_id))
        if stored is None or (expected_user is not None and stored.user_id != expected_user):
            raise PasskeyError("this passkey is not registered for this account")
        handle = parsed.response.user_handle
        if handle is not None and handle != stored.user_id.encode():
            raise PasskeyError("the passkey could not be verified")
        if not _key_usable(stored):  # fail closed: a stored key that does not decode
            raise PasskeyError(UNUSABLE)
        try:
            verified = webauthn.verify_authentication_response(
                credential=parsed,
                expected_challenge=_challenge_bytes(challenge),
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
                require_user_verification=True,
            )
        except _REFUSED:
            raise PasskeyError("the passkey could not be verified") from None
        if not await self._passkeys.used(
            stored.credential_id, stored.sign_count, verified.new_sign_count, self._clock()
        ):
            raise PasskeyError("the passkey was used at the same moment elsewhere; try again")
        return stored.user_id

    async def of_user(self, user_id: str) -> list[PasskeyCredential]:
        return list(await self._passkeys.of_user(user_id))

    async def remove(self, user_id: str, credential_id: str) -> bool:
        return await self._passkeys.delete(user_id, credential_id[:512])
