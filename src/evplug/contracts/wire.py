"""protobuf + gzip framing, as the original system put messages on the wire.

Unpacking is the trust boundary: bytes come from the network, so every failure becomes a
``WireError`` and decompression is bounded, whatever the input claims.
"""

from __future__ import annotations

import gzip
import zlib
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

# A chunk of 64 readings is ~5 KB raw; 4 MiB leaves room for big announcements and still stops
# a gzip bomb long before it hurts.
MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
MAX_COMPRESSED_BYTES = 1024 * 1024

# Caps on what one message may carry, far below what a receiver can hold at once (the telemetry
# sink buffers 100,000 readings): a sender splits anything larger into several messages, and a
# receiver refuses a message over a cap whole. A reading with the usual ids is ~100 bytes, so a
# chunk at its cap (~500 KB) fits both byte caps above even when it does not compress.
MAX_READINGS_PER_CHUNK = 5_000  # ReadingChunk.readings
MAX_DEVICES_PER_ANNOUNCEMENT = 1_000  # DeviceAnnouncement.devices

M = TypeVar("M", bound=Message)


class WireError(ValueError):
    """Bytes that are not a valid gzipped message of the expected type."""


def pack(message: Message) -> bytes:
    # Level 1: telemetry is small and frequent; the ratio barely changes above it.
    return gzip.compress(message.SerializeToString(), compresslevel=1, mtime=0)


def unpack(
    data: bytes,
    message_type: type[M],
    *,
    max_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> M:
    name = message_type.DESCRIPTOR.full_name
    if len(data) > MAX_COMPRESSED_BYTES:
        raise WireError(f"{name}: {len(data)} compressed bytes exceed {MAX_COMPRESSED_BYTES}")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(data, max_bytes)
    except zlib.error as exc:
        raise WireError(f"{name}: not gzip data ({exc})") from None
    if inflater.unconsumed_tail:
        raise WireError(f"{name}: decompresses to more than {max_bytes} bytes; refused")
    if not inflater.eof:
        raise WireError(f"{name}: truncated gzip stream")
    if inflater.unused_data:
        raise WireError(f"{name}: trailing bytes after the gzip stream")
    message = message_type()
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise WireError(f"{name}: malformed protobuf ({exc})") from None
    return message
