"""The browser driver's pure parts: key names, points, the start page, Chromium's flags."""

from __future__ import annotations

import pytest

from agent.drivers.browser import chromium_args, parse_screen, start_url
from agent.drivers.keys import BACK, playwright_key
from agent.drivers.targets import Screen, screen_point, seconds
from agent.exceptions import CommandFailed


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Enter", "Enter"),
        ("enter", "Enter"),
        ("Backspace", "Backspace"),
        ("Tab", "Tab"),
        ("Escape", "Escape"),
        ("Home", "Home"),
        ("Remote Dpad Up", "ArrowUp"),
        ("remote_dpad_center", "Enter"),
        ("Page-Down", "PageDown"),
        ("Back", BACK),
    ],
)
def test_maestro_key_names(name: str, key: str) -> None:
    assert playwright_key(name) == key


def test_a_key_browsers_lack_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError) as caught:
        playwright_key("Volume Up")
    assert caught.value.args[0].startswith(
        "key 'Volume Up' has no equivalent on browser devices (known: ArrowDown,"
    )


@pytest.mark.parametrize(
    ("spec", "point"),
    [
        ("10,20", (10.0, 20.0)),
        (" 50% , 50% ", (512.0, 384.0)),
        ("100%,0", (1024.0, 0.0)),
        ("12.5,7.5", (12.5, 7.5)),
    ],
)
def test_points_in_pixels_or_percent_of_the_screen(spec: str, point: tuple[float, float]) -> None:
    assert screen_point(spec, Screen(1024, 768)) == point


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("1025,0", 'point "1025,0" is outside the 1024x768 screen'),
        ("0,101%", 'point "0,101%" is outside the 1024x768 screen'),
        ("a,b", 'point "a,b" is neither "x,y" nor "x%,y%"'),
    ],
)
def test_bad_points_are_refused_with_the_reason(spec: str, error: str) -> None:
    with pytest.raises(CommandFailed) as caught:
        screen_point(spec, Screen(1024, 768))
    assert str(caught.value) == error


def test_timeouts_print_without_noise() -> None:
    assert (seconds(10.0), seconds(2.5), seconds(0.25)) == ("10s", "2.5s", "0.25s")


def test_start_page_carries_the_device_and_the_animation_settings() -> None:
    environ = {"CORRAL_DEVICE_ID": "abc123", "CORRAL_DEVICE_NAME": "Lobby #1 & co", "CORRAL_ANIMATE": "1"}
    assert start_url(environ) == (
        "file:///opt/corral/start/index.html#id=abc123&name=Lobby%20%231%20%26%20co&animate=1&fps=30"
    )
    assert start_url({**environ, "CORRAL_START_URL": "about:blank"}) == "about:blank"
    assert start_url({}) == "file:///opt/corral/start/index.html#id=&name=&animate=0&fps=30"


def test_screen_from_the_device_environment() -> None:
    screen = parse_screen("1280x800x24")
    assert (screen.width, screen.height) == (1280, 800)
    assert (parse_screen("640x480").width, parse_screen("640x480").height) == (640, 480)
    with pytest.raises(ValueError, match="CORRAL_SCREEN must look like 1024x768x24"):
        parse_screen("big")


def test_chromium_window_is_one_pixel_larger_than_the_screen_in_kiosk_mode() -> None:
    args = chromium_args(Screen(1024, 768))
    assert "--kiosk" in args and "--test-type" in args
    assert "--window-position=0,0" in args and "--window-size=1025,769" in args
    assert not [a for a in args if a.startswith("--remote-debugging")]
