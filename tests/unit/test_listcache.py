"""The replica's LIST cache: an answer comes back only under the version it was stored with, and the
answers held stay within their byte bound, least recently used first out."""

from __future__ import annotations

from gateway.state.listcache import ListCache


def test_an_answer_is_served_only_under_its_own_version() -> None:
    cache = ListCache(1000)
    cache.put(("c1", "p", None), b"g1|v1", b"[1]")
    assert cache.get(("c1", "p", None), b"g1|v1") == b"[1]"
    assert cache.get(("c1", "p", None), b"g1|v2") is None  # the partition changed since
    assert cache.get(("c1", "p", "alice"), b"g1|v1") is None  # another owner's list is another answer
    cache.put(("c1", "p", None), b"g1|v2", b"[1,2]")
    assert cache.get(("c1", "p", None), b"g1|v1") is None
    assert cache.get(("c1", "p", None), b"g1|v2") == b"[1,2]"
    assert (cache.hits, cache.misses, cache.held_bytes) == (2, 3, 5)


def test_the_bytes_held_stay_bounded_least_recently_used_first_out() -> None:
    cache = ListCache(10)
    cache.put(("c1", "a", None), b"v", b"aaaa")
    cache.put(("c1", "b", None), b"v", b"bbbb")
    assert cache.get(("c1", "a", None), b"v") == b"aaaa"  # now b is the least recently used
    cache.put(("c1", "c", None), b"v", b"cccc")
    assert cache.held_bytes == 8
    assert cache.get(("c1", "b", None), b"v") is None
    assert cache.get(("c1", "a", None), b"v") == b"aaaa" and cache.get(("c1", "c", None), b"v") == b"cccc"
    cache.put(("c1", "a", None), b"w", b"x" * 11)  # larger than the whole cache: not kept, old one dropped
    assert cache.get(("c1", "a", None), b"v") is None and cache.held_bytes == 4


def test_zero_bytes_keeps_nothing() -> None:
    cache = ListCache(0)
    assert not cache.enabled
    cache.put(("c1", "a", None), b"v", b"")
    cache.put(("c1", "a", None), b"v", b"x")
    assert cache.held_bytes == 0 and cache.get(("c1", "a", None), b"v") is None


def test_holds_tells_whether_reading_the_version_can_pay_and_counts_a_miss_when_not() -> None:
    cache = ListCache(100)
    assert not cache.holds(("c1", "p", None)) and cache.misses == 1
    cache.put(("c1", "p", None), b"v", b"[]")
    assert cache.holds(("c1", "p", None)) and cache.misses == 1
