"""The subscription trie agrees with the contract's TopicFilter.matches()."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iotnotify.contract import TopicFilter
from iotnotify_emulator.trie import SubscriptionTrie

_level = st.sampled_from(["a", "b", "$x", ""])
_topic = st.lists(_level, min_size=1, max_size=4).map("/".join)
_filter_level = st.sampled_from(["a", "b", "$x", "", "+"])


@st.composite
def _filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "+"


@given(st.lists(_filters(), min_size=1, max_size=10, unique=True), _topic)
def test_trie_matches_exactly_what_topic_filter_matches(filters: list[str], topic: str) -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    for name in filters:
        trie.add(name, name, 0)
    expected = {name for name in filters if TopicFilter(name).matches(topic)}
    assert set(trie.match(topic)) == expected


@given(st.lists(_filters(), min_size=1, max_size=10, unique=True))
def test_removing_every_filter_leaves_an_empty_trie(filters: list[str]) -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    for name in filters:
        trie.add(name, "s", 1)
    assert sorted(trie.filters()) == sorted(filters)
    for name in filters:
        assert trie.remove(name, "s")
    assert len(trie) == 0
    assert list(trie.filters()) == []
    assert not trie.remove(filters[0], "s")


def test_highest_qos_wins_for_overlapping_subscriptions() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.add("a/+", "s", 0)
    trie.add("a/#", "s", 1)
    assert trie.match("a/b") == {"s": 1}


def test_hash_does_not_match_the_parent_level_and_dollar_topics_are_special() -> None:
    """AWS IoT developer guide, "MQTT topics" -> "Topic filters": `sensor/#`
    receives `sensor/`, `sensor/temperature`, ... (not the parent `sensor`)."""
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.add("a/#", "s", 0)
    trie.add("#", "all", 0)
    trie.add("$aws/events/#", "events", 0)
    assert set(trie.match("a")) == {"all"}
    assert set(trie.match("a/")) == {"s", "all"}
    assert set(trie.match("a/b/c")) == {"s", "all"}
    assert set(trie.match("$aws/events/presence/connected/x")) == {"events"}
