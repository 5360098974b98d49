"""Packed pairs of the ZeroMQ envelope (common/wire.py): many (a, b) pairs in one part, unpacked exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.wire import MSG, PACKED, SENDS, MalformedPack, flat, pack_flat, pack_pairs, pairs, unpack_pairs

parts = st.binary(max_size=300)


@given(st.lists(st.tuples(parts, parts), max_size=50))
def test_packed_pairs_come_back_exactly_and_in_order(items):
    flat_parts = [x for pair in items for x in pair]
    assert unpack_pairs(pack_pairs(items)) == flat_parts
    assert pairs([MSG, PACKED, pack_pairs(items)]) == items
    assert pack_flat(flat_parts) == pack_pairs(items)  # the flat layout envelopes hold packs the same


def test_packed_and_plain_pairs_mix_in_their_order():
    frames = [SENDS, b"f1", b"1", PACKED, pack_pairs([(b"f2", b"2"), (b"f3", b"1,2")]), b"f4", b"3"]
    assert pairs(frames) == [(b"f1", b"1"), (b"f2", b"2"), (b"f3", b"1,2"), (b"f4", b"3")]
    assert flat([b"id", MSG, b"1", b"a"], 2) == [b"id", MSG, b"1", b"a"]  # nothing packed: unchanged


@pytest.mark.parametrize("blob", [
    b"\x00\x00",                                   # a length cut short
    b"\x00\x00\x00\x05abc",                        # a part longer than what is left
    b"\x00\x00\x00\x01a",                          # an odd number of parts
    b"\xff\xff\xff\xff" + b"x" * 16,               # a length past MAX_PACKED_PART
])
def test_a_damaged_pack_is_refused_not_misread(blob):
    with pytest.raises(MalformedPack):
        unpack_pairs(blob)
    with pytest.raises(MalformedPack):
        pairs([MSG, PACKED, blob])


@given(st.binary(max_size=64))
def test_any_bytes_unpack_or_are_refused_cleanly(blob):
    try:
        out = unpack_pairs(blob)
    except MalformedPack:
        return
    assert len(out) % 2 == 0 and pack_pairs(zip(out[::2], out[1::2])) == blob
