"""The batch payload: its encoder (versions 2 to 4) and its decoder (versions 1 to 4).

docs/wire-format.md is the normative specification; this package implements it, and
tests/vectors/ holds payload bytes with their decoded contents. The names here are the
package's public API; each lives in the module of its concern:

- format: the specification's numbers (magic, versions, flags, shape bits, limits,
  the known channels, quality flags);
- model: Batch, ChannelData, restamp, quantise and the resolution's decimals; limits:
  the checks of names, units, times and counts that encoder and decoder share;
- varint: zigzag, varints, strings, the Reader;
- packing: Simple-8b, runs of zeros, Rice codes; predict: the predictors and their
  residuals; sections: a channel's time slots and the value block search; rangecoder:
  the coded form; crc32c: the checksum. These (and varint.zigzags) are the pure-Python
  twins of the compiled kernels, under the same names;
- kernels: the one binding of the compiled kernels or their twins;
- encoder (encode, encode_v1, mark_historical), decoder (decode); topics: the MQTT
  topics; dedupe: the backbone's duplicate and gap tracker; reconstruct: a channel's
  series rebuilt from its reconstruction, with its bound; compress_report:
  ``edge-agent compress-report``.
"""

from __future__ import annotations

from edge_agent.wire.decoder import decode
from edge_agent.wire.dedupe import SeqRanges, SeqTracker
from edge_agent.wire.encoder import encode, encode_v1, mark_historical, value_block
from edge_agent.wire.format import (
    BOUND_DECIMAL,
    BOUND_RELATIVE,
    BOUND_SHIFT,
    BOUND_STEPS_MAX,
    DAY_MS,
    ENCODING_DELTA_VARINT,
    EPOCH_BITS,
    FLAG_CLOCK_UNSYNCED,
    FLAG_DEFLATE,
    FLAG_HISTORICAL,
    FLAG_LEVEL_MASK,
    FLAG_LEVEL_SHIFT,
    FORMS,
    KNOWN_CHANNELS,
    LEVELS,
    MAGIC,
    MAX_BATCH_SAMPLES,
    MAX_BODY,
    MAX_CHANNEL_SAMPLES,
    MAX_CHANNELS,
    MAX_NAME,
    MAX_PAYLOAD,
    MAX_PER_BYTE,
    MAX_PERIOD_MS,
    MAX_RESIDUAL_BITS,
    MAX_SEQ,
    MAX_TIME_MS,
    MAX_UNIT,
    NAME_PATTERN,
    PREDICTOR_SEASONAL,
    PREDICTOR_ZERO,
    PREDICTORS,
    QUALITY_INVALID,
    QUALITY_OUT_OF_RANGE,
    QUALITY_STUCK,
    QUALITY_WARMING_UP,
    RECON_MASK,
    RECONSTRUCTIONS,
    RESOLUTION_EXP,
    RICE_PART,
    SHAPE_BINNED,
    SHAPE_CODED,
    SHAPE_EXCEPTIONS,
    SHAPE_FLAGS,
    SHAPE_PREDICTOR,
    SHAPE_REGULAR,
    SHAPE_RICE,
    SHAPE_RUNS,
    STATISTICS,
    VERSION,
    VERSIONS,
)
from edge_agent.wire.kernels import pack_rice, pack_simple8b, zigzags
from edge_agent.wire.model import Batch, ChannelData, decimals_of, quantise, restamp
from edge_agent.wire.packing import unpack_rice, unpack_simple8b
from edge_agent.wire.predict import bin_width_for, season_for
from edge_agent.wire.reconstruct import Rebuilt, points, rebuild
from edge_agent.wire.topics import data_topic, health_topic, parse_data_topic, status_topic
from edge_agent.wire.varint import put_str, put_uvarint, unzigzag, zigzag

__all__ = [
    "BOUND_DECIMAL",
    "BOUND_RELATIVE",
    "BOUND_SHIFT",
    "BOUND_STEPS_MAX",
    "DAY_MS",
    "ENCODING_DELTA_VARINT",
    "EPOCH_BITS",
    "FLAG_CLOCK_UNSYNCED",
    "FLAG_DEFLATE",
    "FLAG_HISTORICAL",
    "FLAG_LEVEL_MASK",
    "FLAG_LEVEL_SHIFT",
    "FORMS",
    "KNOWN_CHANNELS",
    "LEVELS",
    "MAGIC",
    "MAX_BATCH_SAMPLES",
    "MAX_BODY",
    "MAX_CHANNELS",
    "MAX_CHANNEL_SAMPLES",
    "MAX_NAME",
    "MAX_PAYLOAD",
    "MAX_PERIOD_MS",
    "MAX_PER_BYTE",
    "MAX_RESIDUAL_BITS",
    "MAX_SEQ",
    "MAX_TIME_MS",
    "MAX_UNIT",
    "NAME_PATTERN",
    "PREDICTORS",
    "PREDICTOR_SEASONAL",
    "PREDICTOR_ZERO",
    "QUALITY_INVALID",
    "QUALITY_OUT_OF_RANGE",
    "QUALITY_STUCK",
    "QUALITY_WARMING_UP",
    "RECONSTRUCTIONS",
    "RECON_MASK",
    "RESOLUTION_EXP",
    "RICE_PART",
    "SHAPE_BINNED",
    "SHAPE_CODED",
    "SHAPE_EXCEPTIONS",
    "SHAPE_FLAGS",
    "SHAPE_PREDICTOR",
    "SHAPE_REGULAR",
    "SHAPE_RICE",
    "SHAPE_RUNS",
    "STATISTICS",
    "VERSION",
    "VERSIONS",
    "Batch",
    "ChannelData",
    "Rebuilt",
    "SeqRanges",
    "SeqTracker",
    "bin_width_for",
    "data_topic",
    "decimals_of",
    "decode",
    "encode",
    "encode_v1",
    "health_topic",
    "mark_historical",
    "pack_rice",
    "pack_simple8b",
    "parse_data_topic",
    "points",
    "put_str",
    "put_uvarint",
    "quantise",
    "rebuild",
    "restamp",
    "season_for",
    "status_topic",
    "unpack_rice",
    "unpack_simple8b",
    "unzigzag",
    "value_block",
    "zigzag",
    "zigzags",
]
