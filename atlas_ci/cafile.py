"""A CA bundle the user gave, checked before any request: small, and loadable as PEM.

Apart from :mod:`atlas_ci.transport` (which imports requests) so that settings can check
``--ca-file`` without delaying the start of the hash.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from atlas_ci.errors import ConfigError

CA_FILE_LIMIT = 16 * 1024 * 1024  # a CA bundle is kilobytes; the system's is under 1 MiB


def check_ca_file(path: str, what: str) -> None:
    """A CA file OpenSSL can load (PEM, not over the limit), else exit 2 before any request.

    A DER file or garbage otherwise failed every TLS handshake as "TLS error", which is
    neither retried nor the registry's fault.
    """
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror}", "check the path") from None
    if size > CA_FILE_LIMIT:
        raise ConfigError(
            f"{what} is {size} bytes, more than the {CA_FILE_LIMIT >> 20} MiB a CA bundle may be",
            "point it at the PEM file of the registry's CA",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "not PEM"
        raise ConfigError(
            f"{what} cannot be loaded as PEM certificates ({reason})",
            "give a PEM file (-----BEGIN CERTIFICATE-----); convert a DER one with "
            "openssl x509 -inform der -in CA.der -out CA.pem",
        ) from None
