"""The VideoPacket Avro encoding, written for ingest's hot path.

fastavro's generic writer costs ~15 µs a packet (a dict built, every field looked up against the
schema); packets are ingest's whole output, thousands a second. This encoder writes the same bytes in
~3 µs: the camera and session ids are encoded once per session, a non-key packet's six null header fields
are one constant. At start it checks itself against the registry-framed output of the shared serde on
a real record, so a schema change that it does not follow stops the service instead of corrupting data.
"""

from __future__ import annotations

from libs.serde import AvroSerde
from services.ingest.model import PacketRecord

# The order of schemas/video_packet.avsc; checked at start.
FIELDS = (
    "camera_id",
    "session_id",
    "sequence",
    "capture_time",
    "pts_us",
    "dts_us",
    "duration_us",
    "is_keyframe",
    "codec",
    "extradata",
    "time_base_num",
    "time_base_den",
    "width",
    "height",
    "data",
)
_NO_HEADER = b"\x00" * 6  # codec, extradata, time_base_num, time_base_den, width, height: all null


def _long(value: int) -> bytes:
    """Avro long/int: zig-zag, then base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _optional_long(value: int | None) -> bytes:
    return b"\x00" if value is None else b"\x02" + _long(value)


def _optional_bytes(value: bytes | None) -> bytes:
    return b"\x00" if value is None else b"\x02" + _long(len(value)) + value


def _string(value: str) -> bytes:
    encoded = value.encode()
    return _long(len(encoded)) + encoded


class VideoPacketEncoder:
    """Framed VideoPacket values (the serde's framing: Confluent schema id or single-object)."""

    def __init__(self, serde: AvroSerde, topic: str) -> None:
        fields = tuple(field["name"] for field in serde.catalog.get("VideoPacket").definition["fields"])
        if fields != FIELDS:
            raise RuntimeError(f"VideoPacket schema fields {fields} differ from the encoder's {FIELDS}")
        self._ids: dict[str, tuple[str, bytes]] = {}  # camera → (session, its encoded ids)
        self.prefix = b""
        sample = PacketRecord(
            "cam",
            "s",
            7,
            1_700_000_000_000_000,
            -1,
            0,
            66_666,
            True,
            "h264",
            b"\x01\x02",
            1,
            90_000,
            640,
            360,
            b"\x00\x01",
        )
        framed = serde.serialize(topic, "VideoPacket", sample.as_record())
        body = self.encode(sample)
        if not framed.endswith(body):
            raise RuntimeError(
                "the VideoPacket fast encoder disagrees with fastavro; fix services/ingest/packet_avro.py"
            )
        self.prefix = framed[: len(framed) - len(body)]

    def encode(self, p: PacketRecord) -> bytes:
        cached = self._ids.get(p.camera_id)
        if cached is None or cached[0] != p.session_id:
            cached = (p.session_id, _string(p.camera_id) + _string(p.session_id))
            self._ids[p.camera_id] = cached
        if (
            p.codec is None
            and p.extradata is None
            and p.time_base_num is None
            and p.time_base_den is None
            and p.width is None
            and p.height is None
        ):
            header = _NO_HEADER
        else:
            header = (
                (b"\x00" if p.codec is None else b"\x02" + _string(p.codec))
                + _optional_bytes(p.extradata)
                + _optional_long(p.time_base_num)
                + _optional_long(p.time_base_den)
                + _optional_long(p.width)
                + _optional_long(p.height)
            )
        data = p.data
        return b"".join(
            (
                self.prefix,
                cached[1],
                _long(p.sequence),
                _long(p.capture_time),
                b"\x00" if p.pts_us is None else b"\x02" + _long(p.pts_us),
                b"\x00" if p.dts_us is None else b"\x02" + _long(p.dts_us),
                b"\x00" if p.duration_us is None else b"\x02" + _long(p.duration_us),
                b"\x01" if p.is_keyframe else b"\x00",
                header,
                _long(len(data)),
                data,
            )
        )

    def forget(self, camera_id: str) -> None:
        self._ids.pop(camera_id, None)
