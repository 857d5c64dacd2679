#!/usr/bin/env bash
# Make sure a Docker daemon answers. Starts one only if none does and we may:
# through systemd when it runs, else dockerd directly when we are root.
# CORRAL_DOCKERD_ARGS overrides the flags of a directly started dockerd; the
# default keeps it off the host's networks (no bridge, no iptables rules), which
# is what isolated devices (CORRAL_DEVICE_NETWORK=none) need.
set -euo pipefail

docker_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if docker_answers; then
    exit 0
fi
if [[ -n "${DOCKER_HOST:-}" ]]; then
    echo "corral: DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon" >&2
    exit 1
fi
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    echo "corral: starting the Docker service"
    if [[ $(id -u) -eq 0 ]]; then systemctl start docker; else sudo systemctl start docker; fi
elif [[ $(id -u) -eq 0 ]]; then
    args=${CORRAL_DOCKERD_ARGS:---bridge=none --iptables=false}
    echo "corral: starting dockerd $args (log: /var/log/corral-dockerd.log)"
    # shellcheck disable=SC2086
    setsid dockerd $args >/var/log/corral-dockerd.log 2>&1 < /dev/null &
else
    echo "corral: no Docker daemon answers. Start it (sudo systemctl start docker) or set DOCKER_HOST." >&2
    exit 1
fi
for _ in $(seq 1 60); do
    docker_answers && exit 0
    sleep 0.5
done
echo "corral: the Docker daemon did not come up; see /var/log/corral-dockerd.log" >&2
exit 1
