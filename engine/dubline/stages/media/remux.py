"""Copying coded pictures from a previous patch into a new one (incremental re-render).

A patch in an intra-frame codec (ProRes, DNxHR, PNG, FFV1 coded one picture per key frame) codes
each frame on its own, so a frame that a re-render would draw exactly as before can be copied as
the previous file's packet: no decode, no encode, bit for bit the same picture. ``write_patch``
takes ``ReusedFrame(position)`` items among its images and a ``PacketSource`` of the previous
patch to take them from; encoded and copied packets are muxed in frame order (the encoder may
hold a few frames back on its threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dubline.core.errors import InvalidInputError

#: Patch codecs whose every coded picture stands alone (FFV1 is written with a key frame per
#: picture for this reason); H.264 predicts across frames, so its frames are never copied.
INTRA_CODECS = frozenset({"prores", "prores4444", "dnxhr", "png", "ffv1"})


@dataclass(frozen=True)
class ReusedFrame:
    """A patch row whose coded picture is copied from the previous patch; ``shape`` and ``dtype``
    are the images' the render would have drawn (the encoder is set up from them)."""

    position: int
    shape: tuple[int, ...]
    dtype: str

    def template(self) -> np.ndarray:
        return np.empty(self.shape, np.dtype(self.dtype))


class PacketSource:
    """The video packets of a previous patch, asked for by row in increasing order."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        self.path = Path(path)
        self._rate = Fraction(rate)
        self._container = av.open(str(self.path))
        if not self._container.streams.video:
            self._container.close()
            raise InvalidInputError(f"{self.path} has no video stream to reuse frames from")
        self._stream = self._container.streams.video[0]
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height
        self._packets = self._container.demux(self._stream)
        self._ahead: dict[int, bytes] = {}

    def _position(self, packet: av.Packet) -> int:
        assert packet.pts is not None and packet.time_base is not None
        return int(round(packet.pts * packet.time_base * self._rate))

    def data(self, position: int) -> bytes:
        """The coded picture of row ``position``."""
        while position not in self._ahead:
            packet = next(self._packets, None)
            if packet is None:
                raise InvalidInputError(f"{self.path} has no frame {position} to reuse")
            if packet.size and packet.pts is not None:
                self._ahead[self._position(packet)] = bytes(packet)
        for old in [p for p in self._ahead if p < position]:
            del self._ahead[old]
        return self._ahead.pop(position)

    def close(self) -> None:
        self._container.close()


class OrderedMuxer:
    """Muxes one video stream's encoded and copied packets in frame order (``copying``; an
    intra-frame codec's packets are in frame order); otherwise encoded packets go straight
    through, in the encoder's decode order (H.264's B-frames)."""

    def __init__(self, container: av.container.OutputContainer, stream: av.VideoStream, rate: Fraction,
                 copying: bool) -> None:
        self._container, self._stream, self._copying = container, stream, copying
        self._rate = Fraction(rate)
        self._pending: dict[int, av.Packet] = {}
        self._next = 0

    def encoded(self, packet: av.Packet) -> None:
        if not self._copying:
            self._container.mux(packet)
            return
        assert packet.pts is not None and packet.time_base is not None
        self._add(int(round(packet.pts * packet.time_base * self._rate)), packet)

    def copied(self, position: int, data: bytes) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = position
        packet.duration = 1
        packet.time_base = Fraction(1) / self._rate
        packet.is_keyframe = True
        packet.stream = self._stream
        self._add(position, packet)

    def _add(self, position: int, packet: av.Packet) -> None:
        self._pending[position] = packet
        while self._next in self._pending:
            self._container.mux(self._pending.pop(self._next))
            self._next += 1

    def finish(self) -> None:
        for position in sorted(self._pending):  # only after a gap, which a complete patch never has
            self._container.mux(self._pending.pop(position))
