"""Link formats real edges verify themselves: nginx secure_link, Akamai EdgeAuth, CloudFront.

Each emits exactly what its edge checks; none is verified by tokenward (the edge does that).
"""

from tokenward.signedurl.formats.akamai import EdgeAuthSigner
from tokenward.signedurl.formats.cloudfront import CloudFrontSigner
from tokenward.signedurl.formats.nginx import NginxSecureLink

__all__ = ["CloudFrontSigner", "EdgeAuthSigner", "NginxSecureLink"]
