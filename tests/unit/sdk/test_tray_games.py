"""The tray and games (issue 14 §3): unread per game, and a "your turn" opens the game.

No screen here: :class:`TrayState` decides, :class:`TrayApp` wires the
pop-up's click and the menu to the browser (an injected opener).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from iotnotify.contract import Notification
from iotnotify.tray.state import TrayState, link_of

URL_A = "http://127.0.0.1:8780/g/race21-aaaa?seat=s1"
URL_B = "http://127.0.0.1:8780/g/race21-bbbb?seat=s2"


def turn(game: str, url: str | None, name: str = "") -> Notification:
    data: dict[str, Any] = {"game": game, "gameName": name or f"Race {game[-4:]}"}
    if url is not None:
        data["url"] = url
    return Notification.create(title=f"Your turn in {game}", type="game.turn", data=data)


def test_unread_is_counted_per_game_and_opening_a_game_reads_only_it() -> None:
    state = TrayState()
    alert = state.add(turn("race21-aaaa", URL_A))
    assert alert is not None
    assert (alert.game, alert.url) == ("race21-aaaa", URL_A)
    state.add(turn("race21-aaaa", URL_A))
    state.add(turn("race21-bbbb", URL_B))
    state.add(Notification.create(title="Weekly digest"))  # no game
    assert state.unread == 4
    assert state.unread_by_game() == {"race21-aaaa": 2, "race21-bbbb": 1}
    assert [(g.game, g.unread, g.url) for g in state.games()] == [
        ("race21-aaaa", 2, URL_A),
        ("race21-bbbb", 1, URL_B),
    ]
    assert "games Race aaaa: 2, Race bbbb: 1" in state.title()

    assert state.open_game("race21-aaaa") == URL_A
    assert state.unread == 2  # b's turn and the digest are still unread
    assert state.unread_by_game() == {"race21-aaaa": 0, "race21-bbbb": 1}
    assert all(item.read for item in state.recent if item.game == "race21-aaaa")
    assert state.open_game("race21-zzzz") is None

    state.mark_all_read()
    assert state.unread_by_game() == {"race21-aaaa": 0, "race21-bbbb": 0}
    assert [g.label for g in state.games()] == ["Race aaaa", "Race bbbb"]


def test_only_http_links_are_ever_opened() -> None:
    for bad in ("javascript:alert(1)", "file:///etc/passwd", 42, "x" * 3000):
        note = Notification.create(title="t", data={"url": bad, "game": "g"})
        assert link_of(note) is None
    assert link_of(turn("g", URL_A)) == URL_A


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Callable[[], None] | None]] = []

    def notify(self, title: str, body: str, *, on_click: Callable[[], None] | None = None) -> None:
        self.calls.append((title, body, on_click))

    def close(self) -> None:
        pass


def test_clicking_a_your_turn_pop_up_opens_the_game(tmp_path: Path) -> None:
    from iotnotify.tray.app import TrayApp
    from iotnotify.tray.settings import TraySettings

    opened: list[str] = []
    notifier = Recorder()
    app = TrayApp(
        settings=TraySettings(
            api_url="https://api.example", user_pool_client_id="abc", username="a@example.com"
        ),
        settings_path=tmp_path / "tray.json",
        notifier=notifier,
        open_url=opened.append,
    )
    app._on_notification(turn("race21-aaaa", URL_A))
    app._on_notification(Notification.create(title="no link"))
    (_, _, on_click), (_, _, plain) = notifier.calls
    assert plain is None  # nothing to open
    assert on_click is not None
    on_click()
    assert opened == [URL_A]
    assert app.state.unread_by_game() == {"race21-aaaa": 0}
    assert app.state.unread == 1
