"""Which Debian mirror the bootstrapped base image uses."""

from __future__ import annotations

from pathlib import Path

from backend.config.settings import Settings
from backend.runtime.base_image import AptMirrors, base_image_ref, debian_mirrors, host_apt_sources

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm-security
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://one.example/debian bookworm main contrib
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
"""


def test_deb822_sources() -> None:
    assert debian_mirrors([DEB822]) == AptMirrors(
        "http://mirror.example/debian", "http://security.example/debian-security"
    )


def test_one_line_sources_with_options_and_comments() -> None:
    mirrors = debian_mirrors([ONE_LINE])
    assert mirrors.main == "https://one.example/debian"
    assert mirrors.security == AptMirrors().security


def test_first_match_wins_across_files() -> None:
    assert debian_mirrors([ONE_LINE, DEB822]).main == "https://one.example/debian"


def test_non_debian_hosts_fall_back_to_deb_debian_org() -> None:
    ubuntu = "deb http://archive.ubuntu.com/ubuntu jammy main\n"
    assert debian_mirrors([ubuntu]) == AptMirrors(
        "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    )
    assert debian_mirrors([]) == AptMirrors()


def test_disabled_and_non_http_entries_are_skipped() -> None:
    disabled = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n"
    cdrom = "deb cdrom:[Debian]/ bookworm main\ndeb file:/srv/debian bookworm main\n"
    assert debian_mirrors([disabled, cdrom]) == AptMirrors()


def test_image_sources_list_updates_and_security() -> None:
    text = AptMirrors("http://m/debian", "http://s/debian-security").deb822()
    assert "URIs: http://m/debian\nSuites: bookworm bookworm-updates\n" in text
    assert "URIs: http://s/debian-security\nSuites: bookworm-security\n" in text


def test_host_sources_are_read_from_all_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(ONE_LINE)
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "ignored.txt").write_text("deb http://x bookworm main\n")

    assert host_apt_sources(tmp_path) == [ONE_LINE, DEB822]


def test_base_ref_uses_the_image_prefix(tmp_path: Path) -> None:
    assert base_image_ref(Settings(data_dir=tmp_path, image_prefix="acme")) == "acme/base:bookworm"
