"""Docker errors become runtime errors at the boundary."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from backend.runtime.exceptions import ImageBuildError, InstanceError, RuntimeUnavailable
from backend.runtime.sdk import DockerConnection, translate_error


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("500 Server Error", response=response, explanation=explanation)


def test_daemon_replies_keep_their_explanation() -> None:
    error = translate_error(_api_error(500, "no space left on device"), InstanceError, "start x", "unix:///s")

    assert isinstance(error, InstanceError)
    assert str(error) == "start x: no space left on device"


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("refused"),
        docker.errors.DockerException("Error while fetching server API version"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_transport_failures_say_how_to_start_the_daemon(exc: BaseException) -> None:
    error = translate_error(exc, ImageBuildError, "build", "unix:///var/run/docker.sock")

    assert isinstance(error, RuntimeUnavailable)
    assert "unix:///var/run/docker.sock" in str(error)
    assert "systemctl start docker" in str(error)


def test_timeouts_belong_to_the_action() -> None:
    error = translate_error(requests.exceptions.ReadTimeout(), InstanceError, "remove x", "tcp://h:2375")
    assert isinstance(error, InstanceError)
    assert "did not answer in time" in str(error)


def test_connection_object_does_not_connect() -> None:
    connection = DockerConnection("unix:///nonexistent/docker.sock")
    assert connection.url == "unix:///nonexistent/docker.sock"


def test_call_blocking_translates_and_chains() -> None:
    connection = DockerConnection("unix:///nonexistent/docker.sock")

    with pytest.raises(RuntimeUnavailable) as caught:
        connection.call_blocking(lambda client: client.ping(), error=InstanceError, action="ping")

    assert caught.value.__cause__ is not None
    assert not isinstance(caught.value, docker.errors.DockerException)
