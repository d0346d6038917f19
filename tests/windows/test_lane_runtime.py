"""The Windows runtime itself: the lane's own workarounds must not hide anything.

Under Wine the lane moves ``_wmi.pyd`` aside (Wine 8 lacks
propsys.VariantToString) and supplies ``bcryptprimitives.dll`` (Wine 8 lacks
ProcessPrng, which Rust-built wheels such as cryptography import). These tests
prove the runtime still behaves as Windows does for what the product uses, and
hold on a real Windows host too.
"""

from __future__ import annotations

import ctypes
import platform
import ssl
import sys


def test_this_is_a_windows_python() -> None:
    assert sys.platform == "win32"
    assert sys.version_info >= (3, 11)
    assert platform.system() == "Windows"


def test_platform_platform_works() -> None:
    # pip and some libraries call it; under Wine with _wmi.pyd it aborts.
    assert platform.platform().startswith("Windows-")


def test_process_prng_fills_buffers_with_random_bytes() -> None:
    prng = ctypes.WinDLL("bcryptprimitives").ProcessPrng
    prng.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    prng.restype = ctypes.c_int
    first, second = ctypes.create_string_buffer(64), ctypes.create_string_buffer(64)
    assert prng(first, 64) == 1
    assert prng(second, 64) == 1
    assert first.raw != second.raw
    assert first.raw != bytes(64)
    assert prng(first, 0) == 1


def test_cryptography_and_trustme_work() -> None:
    # The demo's and the emulator's TLS certificate comes from trustme.
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)


def test_truststore_builds_an_ssl_context() -> None:
    import truststore

    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
