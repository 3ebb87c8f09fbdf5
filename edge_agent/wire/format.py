"""The specification's numbers (docs/wire-format.md): magic, versions, header flags, a
channel's shape bits, the predictors' codes, the channels every decoder knows, the quality
flags of a sample and the limits a decoder holds. Codes here are never reused."""

from __future__ import annotations

MAGIC = b"EA"
VERSION = 4  # what encode() writes by default (``version=3`` or ``2`` for older backbones)
VERSIONS = (1, 2, 3, 4)  # what decode() reads
ENCODING_DELTA_VARINT = 1  # version 1: timestamps delta-of-delta ms; values zigzag deltas as varints
FLAG_HISTORICAL = 0x01  # sent from the backlog, not live
FLAG_CLOCK_UNSYNCED = 0x02  # wall clock was not known to be synchronised when sampled
FLAG_DEFLATE = 0x04  # versions 2, 3: the body after the flags byte is raw DEFLATE (RFC 1951)
# Versions 2 to 4, flag bits 3-4: the stream's privacy level (LEVELS; 3 is not defined). Above
# raw, the batch holds only statistics over each period of ``period`` ms, each channel named
# BASE.STATISTIC with a statistic of its level (STATISTICS), one point per period at its end.
FLAG_LEVEL_SHIFT = 3
FLAG_LEVEL_MASK = 0x18
LEVELS = ("raw", "aggregate", "total")
STATISTICS = {"aggregate": ("mean", "min", "max", "count", "total"), "total": ("total",)}
# Version 2, per channel: what follows its sample count
SHAPE_REGULAR = 0x01  # consecutive slots from the first one: no time block
SHAPE_EXCEPTIONS = 0x02  # some times are off their slot: a list of offsets follows
SHAPE_FLAGS = 0x04  # some samples carry quality flags: the sparse list follows
SHAPE_PREDICTOR = 0x18  # bits 3-4: how values are predicted from the ones before (PREDICTORS)
PREDICTORS = ("previous", "linear", "mean8", "trend8", "zero", "seasonal")  # 0-3 also in shape bits 3-4
PREDICTOR_ZERO = 4  # version 3, coded form only: the residual is the value itself
PREDICTOR_SEASONAL = 5  # version 3, coded form only: the step one season ago repeats
SHAPE_BINNED = 0x20  # residuals are in bins of `width` steps: lossy within width / 2
SHAPE_RUNS = 0x40  # the residuals are sent as runs of zeros and the values between
SHAPE_RICE = 0x80  # the residuals are Rice codes, a parameter per partition of RICE_PART
SHAPE_CODED = 0xC0  # version 3 (runs and Rice together): predictor in the block, range-coded
RICE_PART = 64
FORMS = ("simple8b", "runs", "rice", "coded")  # a value block's form, as the decoder names it
MAX_RESIDUAL_BITS = 60  # every form's residuals: zigzag (or magnitude, coded) below 2**60
# Version 4, per channel, one byte: how the decoded points stand for the samples they came
# from (bits 0-1), and the lossy part's error bound (bits 2-7, ``b``): 0 none, 1 to 61
# that many steps of the resolution (one byte says the usual bound), 62 a decimal bound
# follows, 63 a decimal fraction of the held value's magnitude follows.
RECONSTRUCTIONS = ("every", "hold", "linear")  # every sample / hold until the next / interpolate
RECON_MASK = 0x03
BOUND_SHIFT = 2
BOUND_STEPS_MAX = 61
BOUND_DECIMAL = 62
BOUND_RELATIVE = 63
EPOCH_BITS = 32  # version 4: random bits drawn at each start of the node, in every batch
DAY_MS = 86_400_000  # the season the encoder tries when a batch holds more than two of it

# Version 2: channels every decoder knows by a one-byte kind, so a batch need not spell out
# their names and units. Kind 0 is a channel named in the payload. Codes are never reused.
KNOWN_CHANNELS: dict[int, tuple[str, str]] = {
    1: ("temperature", "°C"),
    2: ("humidity", "%"),
    3: ("pressure", "hPa"),
    4: ("gas", "Ω"),
    5: ("co2", "ppm"),
    6: ("pm1_0", "µg/m³"),
    7: ("pm2_5", "µg/m³"),
    8: ("pm10", "µg/m³"),
    9: ("particles_0_3um", "/0.1L"),
    10: ("particles_0_5um", "/0.1L"),
    11: ("particles_1_0um", "/0.1L"),
    12: ("particles_2_5um", "/0.1L"),
    13: ("particles_5_0um", "/0.1L"),
    14: ("particles_10um", "/0.1L"),
    15: ("bus_voltage", "V"),
    16: ("shunt_voltage", "mV"),
    17: ("current", "A"),
    18: ("power", "W"),
    19: ("energy", "Wh"),
    20: ("energy", "kWh"),
    21: ("pulses", ""),
}
KIND_OF: dict[tuple[str, str], int] = {v: k for k, v in KNOWN_CHANNELS.items()}  # (name, unit) -> kind
# Quality flags of one sample (the sparse exception list): a flagged sample is the raw value
# as read, kept outside the filter chain and not part of the reconstruction.
QUALITY_OUT_OF_RANGE = 0x01  # outside the chip's physical range
QUALITY_STUCK = 0x02  # the same raw value for longer than the sensor's stuck_after
QUALITY_INVALID = 0x04  # failed the chip's checksum/CRC or validity bit
QUALITY_WARMING_UP = 0x08  # taken while the sensor was warming up (e.g. a PMSA003I's first 30 s)

# Limits, held by the encoder (ValueError) and the decoder (WireFormatError) alike, so a
# decoder can bound its memory from the payload's length before it allocates.
MAX_PAYLOAD = 1 << 20  # bytes of a payload, and of a body after inflating (versions 2-4)
MAX_BODY = MAX_PAYLOAD
MAX_CHANNEL_SAMPLES = 1 << 20  # samples of one channel
MAX_BATCH_SAMPLES = 1 << 20  # samples of all channels of a batch together
MAX_PER_BYTE = 16 * 240  # the most values one byte of a channel stands for (a Simple-8b run byte)
MAX_CHANNELS = 64  # channels of a batch (the widest driver has 12)
MAX_NAME = 64  # bytes of a node id, stream or channel name: NAME_PATTERN
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
MAX_UNIT = 16  # bytes of a unit's UTF-8, no control characters
MAX_TIME_MS = (1 << 53) - 1  # every time (and t0) in [0, MAX_TIME_MS] Unix ms: exact as a double
MAX_PERIOD_MS = 1 << 40  # a schedule's step (about 35 years)
MAX_SEQ = (1 << 53) - 1  # sequence numbers, exact as a double (JSON)
RESOLUTION_EXP = 30  # a decimal resolution or bound m x 10^e has |e| <= this
