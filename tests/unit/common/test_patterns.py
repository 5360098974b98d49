"""Wildcard matching: anchored, every '*' any run (empty included), linear time."""

import re
import time

from hypothesis import given, strategies as st

from common.patterns import matches


def reference(pattern: str, object_id: str) -> bool:
    regex = ".*".join(re.escape(p) for p in pattern.split("*"))
    return re.fullmatch(regex, object_id, re.DOTALL) is not None


def test_anchored_examples():
    assert matches("foo-*", "foo-1") and matches("foo-*", "foo-")
    assert not matches("foo-*", "xfoo-1")
    assert matches("*-1", "foo-1") and not matches("*-1", "foo-1x")
    assert matches("a*b*c", "abc") and matches("a*b*c", "a-b-b-c") and not matches("a*b*c", "acb")
    assert matches("*", "") and matches("**", "x")
    assert not matches("ab*ba", "aba")  # prefix and suffix must not overlap
    assert matches("exact", "exact") and not matches("exact", "exact2")


@given(st.text("ab*", max_size=8), st.text("ab", max_size=12))
def test_same_answer_as_an_anchored_regex(pattern, object_id):
    assert matches(pattern, object_id) == reference(pattern, object_id)


def test_many_stars_stay_fast():
    pattern, object_id = "*a" * 30 + "*b", "a" * 5000
    started = time.process_time()
    assert not matches(pattern, object_id)
    assert time.process_time() - started < 1.0  # a backtracking regex takes minutes here
