"""Shared subscriptions: ``$share/{ShareName}/{TopicFilter}``.

A message matching a shared subscription's filter goes to one member of the
share group, picked at random, instead of to every member. AWS IoT Core
supports them on MQTT 3.1.1 and 5 ("shared subscription sends a published
message to only one of its subscribers in a random manner", AWS IoT blog,
"How to get started with the new shared subscriptions in AWS IoT Core",
2023); the filter syntax is MQTT 5 section 4.8.2: ``ShareName`` is at least
one character and holds no ``/``, ``+`` or ``#``. No retained message is
sent when a shared subscription is made (MQTT 5 section 4.8.2), which the
broker gets for free: the full ``$share/...`` name is never a retained
topic. ``iot:Subscribe`` is evaluated on the full filter
(``topicfilter/$share/{ShareName}/{TopicFilter}``) and ``iot:Receive`` on
the topic of each delivery, like any other subscription.

Groups are keyed by the full ``$share/...`` string; a trie of groups keeps
routing at topic-depth cost.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator
from typing import Final, Generic, TypeVar

from iotnotify.contract import TopicFilter
from iotnotify.errors import InvalidTopic
from iotnotify_emulator.trie import SubscriptionTrie

__all__ = ["SHARE_PREFIX", "SharedSubscriptions", "split_shared"]

SHARE_PREFIX: Final = "$share/"

M = TypeVar("M", bound=Hashable)


def split_shared(name: str) -> tuple[str, str] | None:
    """``(ShareName, TopicFilter)`` of a shared filter; None for a plain filter.

    Raises :class:`InvalidTopic` for a malformed ``$share/...`` filter.
    """
    if not name.startswith(SHARE_PREFIX):
        return None
    group, _, topic_filter = name[len(SHARE_PREFIX) :].partition("/")
    if not group or "+" in group or "#" in group:
        raise InvalidTopic(f"invalid share name in {name!r} (MQTT 5 section 4.8.2)")
    if not topic_filter:
        raise InvalidTopic(f"shared subscription {name!r} has no topic filter")
    TopicFilter(topic_filter)  # raises InvalidTopic
    return group, topic_filter


class _Group(Generic[M]):
    """One share group on one filter: its members and their granted QoS."""

    __slots__ = ("members", "topic_filter")

    def __init__(self, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        self.members: dict[M, int] = {}


class SharedSubscriptions(Generic[M]):
    """Share groups of members ``M`` (sessions), with random delivery."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._groups: dict[str, _Group[M]] = {}
        self._trie: SubscriptionTrie[_Group[M]] = SubscriptionTrie()
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not secrets

    def __len__(self) -> int:
        """Shared subscriptions (member, group) in place."""
        return sum(len(group.members) for group in self._groups.values())

    def add(self, name: str, member: M, qos: int) -> None:
        """Subscribe ``member`` to the shared filter ``name`` (validated by the caller)."""
        parts = split_shared(name)
        assert parts is not None, name
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group(parts[1])
            self._trie.add(parts[1], group, 0)
        group.members[member] = qos

    def remove(self, name: str, member: M) -> bool:
        group = self._groups.get(name)
        if group is None or group.members.pop(member, None) is None:
            return False
        if not group.members:
            del self._groups[name]
            self._trie.remove(group.topic_filter, group)
        return True

    def pick(self, topic: str, eligible: Callable[[M], bool]) -> Iterator[tuple[M, int]]:
        """For each group whose filter matches ``topic``: one random eligible member."""
        for group in self._trie.match(topic):
            candidates = [member for member in group.members if eligible(member)]
            if candidates:
                chosen = self._rng.choice(candidates)
                yield chosen, group.members[chosen]
