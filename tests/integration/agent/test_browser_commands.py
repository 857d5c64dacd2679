"""Every browser command through the hub on a real device, against the baked-in test pages."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from tests.integration.agent.conftest import TEST_PAGES, Device
from tests.integration.agent.png import pixel, size

pytestmark = pytest.mark.docker

SCREEN = (1024, 768)  # CORRAL_SCREEN's default


async def test_login_flow_types_taps_asserts_and_copies(device: Device) -> None:
    assert await device.command("open_url", url=f"{TEST_PAGES}/login.html") == {
        "url": f"{TEST_PAGES}/login.html"
    }
    assert (await device.command("eval_script", script="document.title"))["value"] == "Corral test: login"
    await device.command("tap", target={"id": "username"})
    await device.command("input_text", text="alicex")
    await device.command("erase_text", chars=1)
    await device.command("tap", target={"css": "#password"})
    await device.command("input_text", text="secret")
    assert await device.command("copy_text", target={"id": "username"}) == {"text": "alice"}
    tapped = await device.command("tap", target={"text": "Log in"})
    assert set(tapped) == {"x", "y"}
    await device.command("assert", target={"text": "Welcome, alice"})
    await device.command("assert", target={"text": "Log in"}, visible=False)
    assert await device.command("copy_text", target={"xpath": "//p[@id='welcome']"}) == {
        "text": "Welcome, alice"
    }
    # The text is a regular expression over the element's whole text.
    await device.command("assert", target={"text": "Welcome, .*"})
    assert await device.error("assert", target={"text": "Welcome"}, timeout=1) == (
        'assert: no element with text "Welcome" became visible within 1s'
    )


async def test_open_url_refuses_the_devices_own_control_files(device: Device) -> None:
    # What a hostile viewer's QR code made a scanner open: its credential, on screen and in copy_text.
    for url in ("file:///run/corral/agent.cred", "view-source:file:///proc/self/root/run/corral/agent.cred"):
        assert await device.error("open_url", url=url) == (
            f"open_url: {url} is refused: /run/corral holds the device's private files; no command opens them"
        )
    assert await device.command("open_url", url=f"{TEST_PAGES}/login.html") == {
        "url": f"{TEST_PAGES}/login.html"
    }


async def test_a_wait_that_times_out_names_its_target(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    started = time.monotonic()
    error = await device.error("tap", target={"text": "Sign up"}, timeout=2)
    assert error == 'tap: no element with text "Sign up" became visible within 2s'
    assert 2.0 <= time.monotonic() - started < 6.0
    assert await device.error("assert", target={"id": "username"}, visible=False, timeout=1) == (
        'assert: an element with id "username" was still visible after 1s'
    )
    assert await device.error("tap", target={"text": "("}) == (
        'tap: text "(" is not a valid regular expression: missing ), unterminated subpattern at position 0'
    )
    assert await device.error("tap", target={}) == (
        "tap: target: say exactly one of text, id, css, xpath or point"
    )


async def test_commands_wait_for_what_appears_and_goes_later(device: Device) -> None:
    hello = await device.corral.hub.wait_hello(device.id, timeout=5)
    assert hello.capabilities == sorted(
        [
            "assert",
            "back",
            "clear_state",
            "copy_text",
            "erase_text",
            "eval_script",
            "hide_keyboard",
            "input_text",
            "open_url",
            "ping",
            "press_key",
            "read_qr",
            "screenshot",
            "scroll",
            "scroll_until_visible",
            "stop_app",
            "swipe",
            "tap",
            "wait_for_animation",
            "wait_until",
        ]
    )
    await device.command("open_url", url=f"{TEST_PAGES}/click.html")
    long_text = "0123456789" * 100  # inserted at once rather than typed key by key
    await device.command("tap", target={"id": "field"})
    await device.command("input_text", text=long_text)
    assert await device.command("copy_text", target={"id": "field"}) == {"text": long_text}
    await device.command("assert", target={"text": f"Echo: {long_text}"})
    await device.command("tap", target={"text": "Show later"})
    await device.command("wait_until", visible={"id": "later"})
    await device.command("tap", target={"text": "Hide later"})
    await device.command("wait_until", not_visible={"text": "Going soon"})
    await device.command("tap", target={"text": "Count"}, repeat=2)
    await device.command("assert", target={"text": "Clicked 2"}, timeout=2)


async def test_screenshot_is_a_png_of_the_screen_showing_the_page(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/click.html")
    await device.command("wait_for_animation")
    shot = await device.command("screenshot")
    png = base64.b64decode(shot["png"])
    assert (shot["width"], shot["height"]) == SCREEN
    assert size(png) == SCREEN
    assert pixel(png, 300, 450)[:3] == (0xCC, 0xDD, 0xEE)  # the drag pad, #cde
    assert pixel(png, 900, 150)[:3] == (255, 255, 255)  # the page's white background


async def test_read_qr_finds_the_code_on_the_screen(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/qr.html")
    result = await device.command("read_qr")
    assert result["text"] == "file:///opt/corral/start/test/target.html"
    assert result["format"] == "QRCODE"
    assert [code["text"] for code in result["codes"]] == [result["text"]]
    await device.command("open_url", url=result["text"])
    assert (await device.command("eval_script", script="document.title"))["value"] == "Corral test: target"
    await device.command("assert", target={"text": "Paired"})
    assert await device.error("read_qr", timeout=1) == (
        "read_qr: no QR code or barcode appeared on the screen within 1s"
    )


async def test_eval_script_sees_output_and_env(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    result = await device.command(
        "eval_script",
        script="output.user = env.USER.toUpperCase(); output.count += 1; 6 * 7",
        output={"count": 1},
        env={"USER": "alice"},
    )
    assert result == {"value": 42, "output": {"count": 2, "user": "ALICE"}}
    # As in Maestro, variables are globals of the script too; odd names stay in env only.
    globals_ = await device.command(
        "eval_script",
        script="output.greeting = 'hi ' + USER; [typeof output, env['my-var'], env['class']]",
        env={"USER": "bob", "my-var": "x", "class": "y"},
    )
    assert globals_ == {"value": ["object", "x", "y"], "output": {"greeting": "hi bob"}}
    error = await device.error("eval_script", script="throw new Error('nope')")
    assert error.startswith("eval_script: ") and "nope" in error


async def test_scroll_and_scroll_until_visible_on_a_long_page(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/long.html")

    async def scroll_y() -> int:
        return int((await device.command("eval_script", script="Math.round(window.scrollY)"))["value"])

    assert await scroll_y() == 0
    await device.command("scroll")
    first = await scroll_y()
    assert first > 300
    await device.command("scroll", direction="up")
    assert await scroll_y() == 0
    await device.command("scroll_until_visible", target={"text": "Bottom of the page"})
    in_view = await device.command(
        "eval_script",
        script="const r = document.getElementById('bottom').getBoundingClientRect();"
        " r.top + r.height / 2 <= window.innerHeight && r.bottom >= 0",
    )
    assert in_view["value"] is True
    await device.command("swipe", direction="down")  # a finger moving down: the page goes up
    assert await scroll_y() < 7000
    error = await device.error("scroll_until_visible", target={"text": "Top of the page"}, timeout=1)
    assert error == (
        'scroll_until_visible: no element with text "Top of the page" came into view within 1s'
        " of scrolling down"
    )


async def test_back_press_key_and_swipe(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    await device.command("tap", target={"text": "Go to target"})
    await device.command("assert", target={"text": "Paired"})
    await device.command("back")
    await device.command("assert", target={"id": "username"})
    await device.command("open_url", url=f"{TEST_PAGES}/target.html")
    await device.command("press_key", key="Back")
    await device.command("assert", target={"id": "username"})

    await device.command("open_url", url=f"{TEST_PAGES}/click.html")
    for key in ("Enter", "tab", "Remote Dpad Up", "Escape"):
        await device.command("press_key", key=key)
    await device.command("assert", target={"text": "Keys: Enter Tab ArrowUp Escape"})
    assert (await device.error("press_key", key="Power")).startswith(
        "press_key: key 'Power' has no equivalent on browser devices (known: ArrowDown,"
    )

    await device.command("swipe", start="100,400", end="300,500", duration_ms=200)
    await device.command("assert", target={"text": "Dragged from 100,400 to 300,500"})
    await device.command("swipe", start="10%,60%", end="50%,70%")
    await device.command("assert", target={"text": "Dragged from 102,461 to 512,538"})
    await device.command("tap", target={"point": "1%,1%"})  # a point outside any element is fine
    assert await device.error("tap", target={"point": "2000,10"}) == (
        'point "2000,10" is outside the 1024x768 screen'
    )


async def test_clear_state_and_stop_app(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    await device.command("eval_script", script="localStorage.setItem('k', 'v')")
    await device.command("clear_state")
    assert (await device.command("eval_script", script="localStorage.getItem('k')"))["value"] is None
    await device.command("stop_app")
    href = (await device.command("eval_script", script="location.href"))["value"]
    assert href.startswith(f"file:///opt/corral/start/index.html#id={device.id}&name=")
    assert href.endswith("&animate=0&fps=30")
    await device.command("hide_keyboard")


async def test_several_commands_in_flight_at_once(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/click.html")
    started = time.monotonic()
    # The wait for #later runs while the tap that makes it appear happens.
    waited, tapped, pong = await asyncio.gather(
        device.command("assert", target={"id": "later"}),
        device.command("tap", target={"text": "Show later"}),
        device.command("ping"),
    )
    assert waited == {} and set(tapped) == {"x", "y"} and "pong" in pong
    assert time.monotonic() - started < 8.0
