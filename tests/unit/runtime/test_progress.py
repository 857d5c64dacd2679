"""Progress parsed from docker build, apt and debootstrap output."""

from __future__ import annotations

from backend.runtime.context import IMAGES_DIR
from backend.runtime.progress import (
    AptProgress,
    BuildProgress,
    DebootstrapProgress,
    dockerfile_steps,
    scaled,
    step_weight,
)

DOCKERFILE = """\
# syntax comment
ARG BASE=x
FROM ${BASE}

RUN apt-get update \\
 # a comment between continuation lines
 && apt-get install -y a b
COPY a /a
"""


def test_dockerfile_steps_join_continuations_and_skip_comments() -> None:
    assert dockerfile_steps(DOCKERFILE) == [
        "ARG BASE=x",
        "FROM ${BASE}",
        "RUN apt-get update && apt-get install -y a b",
        "COPY a /a",
    ]


def test_browser_dockerfile_parses() -> None:
    steps = dockerfile_steps((IMAGES_DIR / "browser" / "Dockerfile").read_text())

    assert steps[0].startswith("ARG BASE")
    assert steps[-1].startswith("ENTRYPOINT")
    assert sum(step_weight(step) >= 40 for step in steps) == 1  # exactly one package install


def _feed(
    parser: BuildProgress | AptProgress | DebootstrapProgress, lines: list[str]
) -> list[tuple[float, str]]:
    return [update for line in lines if (update := parser.feed(line))]


def test_build_progress_weights_the_package_install() -> None:
    parser = BuildProgress(dockerfile_steps(DOCKERFILE))
    updates = _feed(
        parser,
        [
            "Step 1/6 : ARG BASE=x",
            "Step 2/6 : FROM ${BASE}",
            " ---> 1234",
            "Step 3/6 : RUN apt-get update && apt-get install -y a b",
            "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
            "0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.",
            "Get:1 http://deb.debian.org/debian bookworm/main amd64 a amd64 1.0 [1 kB]",
            "Get:2 http://deb.debian.org/debian bookworm/main amd64 b amd64 1.0 [1 kB]",
            "Unpacking a (1.0) ...",
            "Setting up a (1.0) ...",
            "Unpacking b:amd64 (1.0) ...",
            "Setting up b:amd64 (1.0) ...",
            "Step 4/6 : COPY a /a",
            # one LABEL step per label, appended by the builder
            "Step 5/6 : LABEL corral.content-hash=abc",
            "Step 6/6 : LABEL corral.kind=browser",
            "Successfully built 1234",
        ],
    )
    fractions = [fraction for fraction, _ in updates]

    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert updates[2] == (fractions[2], "step 3/6: RUN apt-get update && apt-get install -y a b")
    assert fractions[2] < 0.05  # the install has not started yet...
    assert fractions[-5] > 0.9  # ...and dominates the build
    assert "apt: unpacking b" in [message for _, message in updates]


def test_build_progress_survives_an_unexpected_step_count() -> None:
    parser = BuildProgress(["FROM x"] * 10)
    updates = _feed(parser, ["Step 1/2 : FROM x", "Step 2/2 : RUN true", "Successfully built 1"])
    assert [fraction for fraction, _ in updates] == [0.0, 0.5, 1.0]


def test_apt_progress_is_monotonic_when_dpkg_interleaves_phases() -> None:
    parser = AptProgress()
    updates = _feed(
        parser,
        [
            "1 upgraded, 3 newly installed, 0 to remove and 5 not upgraded.",
            "Get:1 http://deb.debian.org/debian-security bookworm-security/main amd64 perl-base amd64 5 [1k]",
            "Unpacking perl-base (5) over (4) ...",
            "Setting up perl-base (5) ...",  # essential packages are configured early
            "Unpacking libssl3:amd64 (3.0) ...",
            "Unknown line",
        ],
    )
    fractions = [fraction for fraction, _ in updates]

    assert fractions == sorted(fractions)
    assert updates[0][1] == "apt: installing 4 packages"
    assert updates[-1][1] == "apt: unpacking libssl3"
    assert 0.05 < fractions[-1] < 1.0


DEBOOTSTRAP = """\
I: Target architecture can be executed
I: Retrieving InRelease
I: Retrieving Packages
I: Resolving dependencies of required packages...
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Retrieving apt 2.6.1
I: Chosen extractor for .deb packages: dpkg-deb
I: Extracting adduser...
I: Extracting apt...
I: Installing core packages...
I: Unpacking required packages...
I: Unpacking adduser...
I: Unpacking apt...
I: Configuring required packages...
I: Configuring apt...
I: Configuring libc6:amd64...
I: Unpacking the base system...
I: Base system installed successfully.
W: not an info line
"""


def test_debootstrap_progress_counts_packages_per_phase() -> None:
    updates = _feed(DebootstrapProgress(), DEBOOTSTRAP.splitlines())
    fractions = [fraction for fraction, _ in updates]
    messages = [message for _, message in updates]

    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert "debootstrap: retrieving adduser" in messages
    assert "debootstrap: extracting apt" in messages
    assert "debootstrap: configuring libc6:amd64" in messages
    assert "debootstrap: Unpacking the base system" in messages
    assert len(updates) == len(DEBOOTSTRAP.splitlines()) - 1  # the W: line moves nothing


def test_scaled_maps_into_a_range() -> None:
    seen: list[tuple[float, str]] = []
    report = scaled(lambda fraction, message: seen.append((fraction, message)), 0.2, 0.6)

    report(0.0, "a")
    report(0.5, "b")
    report(2.0, "c")

    assert seen == [(0.2, "a"), (0.4, "b"), (0.6, "c")]
    scaled(None, 0, 1)(0.5, "ignored")  # no callback: no error
