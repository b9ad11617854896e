"""The TLS context of ``listen.tls``: files checked at start, each problem naming its key.

Python's ssl defaults for a server (no compression, forward-secret ciphers first, no
renegotiation), with TLS 1.2 at least, or 1.3 when ``minimum_version = "1.3"``. A private key
that every local user may read is refused, and so is an encrypted one: OpenSSL would prompt for
its password on a terminal the gateway does not have. With ``client_ca``, clients must present a
certificate one of those CAs signed (mutual TLS); their tokens are still checked as always.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from slurmgate.server.config import TlsSettings
from slurmgate.server.errors import ConfigError

__all__ = ["server_context"]

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class _Encrypted(Exception):
    """The private key asked for a password."""


def _no_password() -> bytes:
    raise _Encrypted


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    return None


def server_context(tls: TlsSettings, origin: str) -> ssl.SSLContext | None:
    """The server's SSLContext, None for plain HTTP; ConfigError naming what is wrong.

    ``origin`` (the configuration file) leads every problem, as in the configuration's checks.
    """
    if tls.certificate is None or tls.key is None:
        return None
    files = {"certificate": tls.certificate, "key": tls.key, "client_ca": tls.client_ca}
    problems = [
        f"{origin}: listen.tls.{key}: {problem}"
        for key, path in files.items()
        if path is not None and (problem := _unreadable(path)) is not None
    ]
    if problems:
        raise ConfigError(problems)
    mode = tls.key.stat().st_mode
    if mode & stat.S_IROTH:
        # As sshd does with host keys: a key every local user can read is no longer secret.
        raise ConfigError(
            [f"{origin}: listen.tls.key: {tls.key} is readable by every user (mode "
             f"{stat.S_IMODE(mode):04o}); make it 0600 or 0640 (or use systemd's LoadCredential=)"]
        )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.minimum_version]
    try:
        # Parses the certificates alone, to tell a bad certificate from a bad key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.certificate)
    except ssl.SSLError:
        raise ConfigError(
            [f"{origin}: listen.tls.certificate: no PEM certificate in {tls.certificate}"]
        ) from None
    try:
        context.load_cert_chain(tls.certificate, tls.key, password=_no_password)
    except _Encrypted:
        raise ConfigError(
            [f"{origin}: listen.tls.key: {tls.key} is encrypted; give the key unencrypted, "
             "readable only by the gateway's user"]
        ) from None  # fmt: skip
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            problem = f"{tls.key} is not the key of the certificate {tls.certificate}"
        else:
            problem = f"no PEM private key in {tls.key}"
        raise ConfigError([f"{origin}: listen.tls.key: {problem}"]) from None
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except ssl.SSLError:
            raise ConfigError(
                [f"{origin}: listen.tls.client_ca: no PEM certificate in {tls.client_ca}"]
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
