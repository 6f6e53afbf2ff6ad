"""The emulator's Live Avatar: valid fragmented MP4 video at 24 frames a second.

Vertex documents the avatar output of Gemini 3.8 Live as a 24 fps MP4 stream
(`responseModalities: ["VIDEO"]`). The emulator sends real, playable video so that a client's
player is tested for real: fragmented MP4 (ISO BMFF: an init segment `ftyp`+`moov`, then
`moof`+`mdat` fragments, what Media Source Extensions append), holding H.264 Constrained
Baseline whose every macroblock is I_PCM (raw samples, no transform): an encoder in a page of
code, decodable by every H.264 decoder. A frame is a face-less square whose brightness follows
the voice, so a test can see it change.

Each chunk the session sends is self-contained: the init segment, then one fragment with the
frames of the speech it goes with. A player appends chunks in order (`SourceBuffer.mode =
"sequence"`); appending the init segment again is allowed and harmless.
"""

from __future__ import annotations

import base64
import functools
import struct

FRAMES_PER_SECOND = 24
MIME_TYPE = "video/mp4"
# What `MediaSource.isTypeSupported` and `addSourceBuffer` want: Constrained Baseline, level 1.
CODECS = 'video/mp4; codecs="avc1.42C00A"'
WIDTH = HEIGHT = 64  # 4x4 macroblocks: 6 KiB a frame, ~150 KB a second
_TIMESCALE = 24_000
_FRAME_TICKS = _TIMESCALE // FRAMES_PER_SECOND
_MB = 16


class _Bits:
    """An RBSP bit writer with Exp-Golomb codes (H.264 7.2, 9.1)."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, width: int, value: int) -> None:
        self._bits.extend((value >> shift) & 1 for shift in range(width - 1, -1, -1))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self._bits) % 8:
            self._bits.append(0)

    def raw(self, data: bytes) -> None:
        assert len(self._bits) % 8 == 0
        for byte in data:
            self.u(8, byte)

    def trailing(self) -> bytes:
        self._bits.append(1)
        self.align_zero()
        bits = self._bits
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _nal(nal_type: int, rbsp: bytes) -> bytes:
    """A NAL unit (nal_ref_idc 3) with emulation prevention bytes inserted."""
    out = bytearray([0x60 | nal_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps() -> bytes:
    bits = _Bits()
    bits.u(8, 66)  # profile_idc: Baseline
    bits.u(8, 0xC0)  # constraint_set0 and 1: Constrained Baseline
    bits.u(8, 10)  # level_idc 1.0
    bits.ue(0)  # seq_parameter_set_id
    bits.ue(0)  # log2_max_frame_num_minus4
    bits.ue(2)  # pic_order_cnt_type: output order is decode order
    bits.ue(0)  # max_num_ref_frames: every frame is an IDR picture
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(WIDTH // _MB - 1)
    bits.ue(HEIGHT // _MB - 1)
    bits.u(1, 1)  # frame_mbs_only_flag
    bits.u(1, 1)  # direct_8x8_inference_flag
    bits.u(1, 0)  # frame_cropping_flag
    bits.u(1, 0)  # vui_parameters_present_flag
    return _nal(7, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pic_parameter_set_id
    bits.ue(0)  # seq_parameter_set_id
    bits.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    bits.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    bits.ue(0)  # num_slice_groups_minus1
    bits.ue(0)  # num_ref_idx_l0_default_active_minus1
    bits.ue(0)  # num_ref_idx_l1_default_active_minus1
    bits.u(1, 0)  # weighted_pred_flag
    bits.u(2, 0)  # weighted_bipred_idc
    bits.se(0)  # pic_init_qp_minus26
    bits.se(0)  # pic_init_qs_minus26
    bits.se(0)  # chroma_qp_index_offset
    bits.u(1, 1)  # deblocking_filter_control_present_flag
    bits.u(1, 0)  # constrained_intra_pred_flag
    bits.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(8, bits.trailing())


SPS, PPS = _sps(), _pps()


def frame(brightness: int, idr_pic_id: int) -> bytes:
    """One IDR picture (a slice NAL unit) of a square lit at `brightness` (16-235)."""
    return _frame(max(16, min(235, brightness)), idr_pic_id % 2)


@functools.cache  # a dozen distinct pictures: encoding one bit by bit takes milliseconds
def _frame(luma: int, idr_pic_id: int) -> bytes:
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I (every slice of the picture)
    bits.ue(0)  # pic_parameter_set_id
    bits.u(4, 0)  # frame_num
    bits.ue(idr_pic_id)  # consecutive IDR pictures differ in idr_pic_id
    bits.u(1, 0)  # no_output_of_prior_pics_flag
    bits.u(1, 0)  # long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc: off
    for row in range(HEIGHT // _MB):
        for column in range(WIDTH // _MB):
            bits.ue(25)  # mb_type I_PCM
            bits.align_zero()
            # A lit square in the middle on a dark ground; chroma neutral (a bluish tint).
            inner = 0 < row < HEIGHT // _MB - 1 and 0 < column < WIDTH // _MB - 1
            bits.raw(bytes([luma if inner else 32]) * 256 + bytes([150]) * 64 + bytes([120]) * 64)
    return _nal(5, bits.trailing())


# --- ISO BMFF ----------------------------------------------------------------------------


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def init_segment() -> bytes:
    """`ftyp` + `moov`: one H.264 video track, no samples (they come in fragments)."""
    avcc = _box(
        b"avcC",
        bytes([1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1]),
        struct.pack(">H", len(SPS)),
        SPS,
        bytes([1]),
        struct.pack(">H", len(PPS)),
        PPS,
    )
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HH", WIDTH, HEIGHT),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, 0, struct.pack(">I", 0)),
        _full(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = _box(
        b"minf",
        _full(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full(
            b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, _TIMESCALE, 0), struct.pack(">HH", 0x55C4, 0)
        ),
        _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"avatar\x00"),
        minf,
    )
    tkhd = _full(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, 0),  # times, track_ID 1, reserved, duration
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate_group, volume, reserved
        _MATRIX,
        struct.pack(">II", WIDTH << 16, HEIGHT << 16),
    )
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, _TIMESCALE, 0),
        struct.pack(">IH", 0x00010000, 0x0100),  # rate, volume
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next_track_ID
    )
    mvex = _box(b"mvex", _full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    ftyp = _box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5iso6avc1mp41")
    return ftyp + _box(b"moov", mvhd, _box(b"trak", tkhd, mdia), mvex)


INIT_SEGMENT = init_segment()


def fragment(sequence: int, first_frame: int, brightness: list[int]) -> bytes:
    """`moof` + `mdat`: one frame per entry of `brightness`, from frame `first_frame` on."""
    samples = [frame(level, first_frame + index) for index, level in enumerate(brightness)]
    payloads = [struct.pack(">I", len(sample)) + sample for sample in samples]
    sync = 0x02000000  # sample_depends_on = 2: a sync sample

    def moof(data_offset: int) -> bytes:
        entries = b"".join(
            struct.pack(">III", _FRAME_TICKS, len(payload), sync) for payload in payloads
        )
        trun = _full(b"trun", 0, 0x000701, struct.pack(">Ii", len(payloads), data_offset), entries)
        traf = _box(
            b"traf",
            _full(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),  # default-base-is-moof
            _full(b"tfdt", 1, 0, struct.pack(">Q", first_frame * _FRAME_TICKS)),
            trun,
        )
        return _box(b"moof", _full(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)

    size = len(moof(0))
    return moof(size + 8) + _box(b"mdat", *payloads)


def frames_for(seconds: float) -> int:
    """How many frames `seconds` of speech take at 24 fps (at least one)."""
    return max(1, round(seconds * FRAMES_PER_SECOND))


class AvatarStream:
    """One session's avatar: chunks that follow each other (fragment numbers, frame times)."""

    def __init__(self) -> None:
        self._sequence = 0
        self._frames = 0

    def chunk(self, seconds: float) -> dict[str, str]:
        """The `inlineData` of a chunk that shows `seconds` of speech: the init segment and one
        fragment, its frames brightening and fading like a mouth opening and closing."""
        count = frames_for(seconds)
        levels = [120 + 100 * (index % 6) // 5 for index in range(count)]
        self._sequence += 1
        data = INIT_SEGMENT + fragment(self._sequence, self._frames, levels)
        self._frames += count
        return {"mimeType": MIME_TYPE, "data": base64.b64encode(data).decode()}
