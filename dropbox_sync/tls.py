"""The one builder of client TLS contexts: Infiniti uploads (client.py) and SMTP (mail.py).

The OS trust store by default, through truststore, so a school's own CA (a TLS
inspecting proxy, an internal mail relay) installed in Windows or the macOS
keychain just works; or exactly the CA file the config names (``ca_bundle``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import truststore


def client_context(ca_bundle: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """A context that checks the server's certificate against ``ca_bundle``, else the OS store.

    ``verify=False`` (an inbox's ``verify_tls = false``, rehearsals only; config.load warns)
    checks nothing; it is ignored when a ``ca_bundle`` is given.
    """
    if ca_bundle is not None:
        return ssl.create_default_context(cafile=str(ca_bundle))
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # truststore's docs: libraries use truststore.SSLContext directly rather
    # than inject_into_ssl(), which would change every other user of ssl.
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
