"""Why a signed URL was refused: one closed set of reasons, each with the HTTP status to answer.

Reasons other than MISSING, MALFORMED, UNKNOWN_KEY and BAD_SIGNATURE are only ever reported
for a link whose signature verified, so they never tell a forger anything about a forgery.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MISSING = "missing"  # no signature parameters at all
    MALFORMED = "malformed"  # not parseable, ambiguous, or a field out of range
    UNKNOWN_KEY = "unknown_key"  # the key id is not in the key set (retired, or never ours)
    BAD_SIGNATURE = "bad_signature"  # anything signed was changed, path and query included
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_IP = "wrong_ip"  # bound to another client address or network
    WRONG_PATH = "wrong_path"  # a prefix (ACL) link used outside its prefix

    @property
    def status(self) -> int:
        return _STATUS[self]


# 410 for expiry follows nginx secure_link's convention: the link was good and is now gone.
_STATUS = {
    Reason.MISSING: 403,
    Reason.MALFORMED: 400,
    Reason.UNKNOWN_KEY: 403,
    Reason.BAD_SIGNATURE: 403,
    Reason.EXPIRED: 410,
    Reason.NOT_YET_VALID: 403,
    Reason.WRONG_IP: 403,
    Reason.WRONG_PATH: 403,
}


class SignedUrlError(ValueError):
    """A URL that cannot be signed, or a signed URL that does not verify.

    The message is a fixed phrase about the input's shape; it never quotes a signature or a key.
    """

    def __init__(self, reason: Reason, message: str = "") -> None:
        super().__init__(message or reason.value)
        self.reason = reason


def malformed(message: str) -> SignedUrlError:
    return SignedUrlError(Reason.MALFORMED, message)
