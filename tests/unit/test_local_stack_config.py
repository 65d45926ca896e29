"""The offline stack's defaults point at files of this checkout."""

from __future__ import annotations

from pathlib import Path

from iotnotify_local.stack import StackConfig

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_served_by_default_is_this_checkouts_web_dist() -> None:
    # Given the default configuration of `iotnotify local`
    config = StackConfig(host="127.0.0.1", port=0, app="iotnotify", stage="local")

    # Then the page it serves at / is web/dist of this repository (the e2e tests drive it)
    assert config.web_dir == ROOT / "web" / "dist"
