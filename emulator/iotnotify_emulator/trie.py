"""A subscription trie: routing cost follows the topic's depth, not the subscriber count.

A publish walks one node per topic level (plus the ``+`` and ``#`` branches
present at that level), so a million subscriptions to unrelated topics cost
a publish nothing. Values are kept per node in a dict keyed by subscriber, so
subscribe, unsubscribe and a subscriber's departure are O(depth).

``#`` follows AWS IoT Core, not MQTT 3.1.1 section 4.7.1.2. The AWS IoT
developer guide, "MQTT" -> "AWS IoT differences from MQTT version 3.1.1
specification" (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences):
"all strings at and below its level in the topic hierarchy are matched.
However, the parent topic is not matched. For example, a subscription to
the topic ``sensor/#`` receives messages published to the topics
``sensor/``, ``sensor/temperature``, ``sensor/temperature/room1``, but not
messages published to ``sensor``"; "MQTT topics" -> "Topic filters"
(topics.html#topicfilters) gives the same examples. So here ``a/#``
matches ``a/`` and ``a/b/c`` but not ``a``.
:meth:`iotnotify.contract.TopicFilter.matches`
follows the same rule (a property test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Final, Generic, TypeVar

__all__ = ["SubscriptionTrie"]

K = TypeVar("K", bound=Hashable)


# Most nodes have children or subscribers, not both (a subscribed topic's
# leaf has none below it; the levels above hold no subscriber): an empty
# dict is 64 B, two per subscription of an idle connection. Nodes share this
# one until their first write (``add``); it is only ever read.
_EMPTY: Final[dict[Any, Any]] = {}


class _Node(Generic[K]):
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = _EMPTY
        self.subscribers: dict[K, int] = _EMPTY


class SubscriptionTrie(Generic[K]):
    """Topic filters (already validated) -> {subscriber: granted QoS}."""

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, subscriber: K, qos: int) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            if node.children is _EMPTY:
                node.children = {}
            node = node.children.setdefault(level, _Node())
        if node.subscribers is _EMPTY:
            node.subscribers = {}
        if subscriber not in node.subscribers:
            self._count += 1
        node.subscribers[subscriber] = qos

    def remove(self, topic_filter: str, subscriber: K) -> bool:
        path: list[tuple[_Node[K], str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if node.subscribers.pop(subscriber, None) is None:
            return False
        self._count -= 1
        # Prune empty branches so churn of unique topics does not leak nodes.
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.subscribers or child.children:
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> dict[K, int]:
        """Subscribers whose filter matches ``topic``, each with its highest QoS."""
        found: dict[K, int] = {}
        levels = topic.split("/")
        # MQTT 3.1.1 section 4.7.2: wildcards in the first level never match
        # a topic starting with '$'.
        dollar = topic.startswith("$")
        self._walk(self._root, levels, 0, found, dollar)
        return found

    def _walk(
        self, node: _Node[K], levels: list[str], index: int, found: dict[K, int], dollar: bool
    ) -> None:
        if index == len(levels):
            # Past the topic's last level: a '#' child would need a level of
            # its own to match (AWS: "a/#" does not match "a"; module docstring).
            _merge(found, node.subscribers)
            return
        wildcards = not (dollar and index == 0)
        if wildcards:
            hash_node = node.children.get("#")
            if hash_node is not None:
                _merge(found, hash_node.subscribers)
        exact = node.children.get(levels[index])
        if exact is not None:
            self._walk(exact, levels, index + 1, found, dollar)
        if wildcards:
            plus = node.children.get("+")
            if plus is not None:
                self._walk(plus, levels, index + 1, found, dollar)

    def filters(self) -> Iterator[str]:
        """Every filter with at least one subscriber (for stats and tests)."""
        stack: list[tuple[_Node[K], tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, prefix = stack.pop()
            if node.subscribers and prefix:
                yield "/".join(prefix)
            for level, child in node.children.items():
                stack.append((child, (*prefix, level)))


def _merge(found: dict[K, int], subscribers: dict[K, int]) -> None:
    for subscriber, qos in subscribers.items():
        if found.get(subscriber, -1) < qos:
            found[subscriber] = qos
