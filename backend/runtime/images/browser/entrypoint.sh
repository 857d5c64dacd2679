#!/bin/bash
# Corral browser device: the agent and Xvnc, supervised. The agent starts Chromium.
#
# Runs as the device's non-root uid under tini (PID 1, `tini -g`).
#
# Contract:
#   /run/corral           host directory (0700, owned by the device uid), bind-mounted rw
#   /run/corral/vnc.sock  RFB (VNC) over a unix socket, mode 0600; appears once Xvnc listens
#   /run/corral/hub.sock  the hub's socket for the agent; created by the host, may come late
#   /run/corral/agent.cred  the device's agent credential (0600), written and rotated by
#                         the host; the agent re-reads it before every connection. No
#                         secret is ever passed in the environment or on a command line.
#   env CORRAL_DEVICE_ID, CORRAL_DEVICE_NAME (read by the agent and the start page)
#   env CORRAL_SCREEN     WIDTHxHEIGHTxDEPTH, default 1024x768x24
#   env CORRAL_START_URL  first page; empty shows the baked-in start page
#   env CORRAL_ANIMATE=1  start page runs an animation (fps benchmarks), paced to
#   env CORRAL_ANIMATE_FPS  frames per second, default 30
#   /opt/corral/start/    the start page; test/ holds the pages the agent's tests and
#                         the example flows use (file:///opt/corral/start/test/*.html)
#
# Chromium belongs to the agent (agent/drivers/browser.py): it launches Debian's
# Chromium through Playwright over a pipe (no remote debugging port), headed on
# $DISPLAY in kiosk mode on the start page above, and relaunches it with a backoff
# when it exits. The agent's environment carries everything it needs for that.
#
# Why `-SecurityTypes None` is safe here: Xvnc listens on no TCP port
# (-rfbport -1, -nolisten tcp, -nolisten local) and only on a unix socket of mode
# 0600 owned by the device uid, inside a 0700 directory of that uid on the host.
# Only that uid (and root) can connect; everyone else reaches the screen through
# Corral's stream proxy, which admits a pane only with a short-lived token for
# this device. A VNC password would add nothing but a secret to distribute.
#
# Lifetimes: Xvnc is the device's screen; if it dies the script exits non-zero so
# the container stops and the failure is visible. The agent is restarted with a
# backoff (1 s doubling to 30 s) whenever it exits; it retries until the hub
# listens on hub.sock, and its Chromium exits with it. docker stop sends SIGTERM to
# the whole process group (tini -g); every process exits within a fraction of a
# second.

set -u -o pipefail

RUN_DIR=/run/corral
VNC_SOCKET=$RUN_DIR/vnc.sock
export DISPLAY=:1
export HOME=${HOME:-/tmp/home}

log() { printf 'corral-entrypoint: %s\n' "$*" >&2; }

# Every process of the device shares this script's process group; signal them all.
stop_all() {
    trap '' TERM INT
    log "stopping"
    kill -TERM 0 2>/dev/null
    wait
    rm -f "$VNC_SOCKET"
}

# First thing: a docker stop right after start must still end in a clean exit.
trap 'stop_all; exit 0' TERM INT

screen=${CORRAL_SCREEN:-1024x768x24}
if [[ ! $screen =~ ^([0-9]+)x([0-9]+)(x([0-9]+))?$ ]]; then
    log "CORRAL_SCREEN must look like 1024x768x24, got '$screen'"
    exit 2
fi
width=${BASH_REMATCH[1]}
height=${BASH_REMATCH[2]}
depth=${BASH_REMATCH[4]:-24}
export CORRAL_SCREEN=$screen # the agent sizes Chromium's window and its screenshots from it

mkdir -p "$HOME"
# Created here (as the device uid, sticky like the usual root-owned one) so Xvnc
# does not complain that a non-root server cannot create it.
mkdir -p -m 1777 /tmp/.X11-unix
# A socket left by an earlier run of this container must not pass for a live one
# (healthcheck, readiness probes); Xvnc creates a fresh one when it listens.
rm -f "$VNC_SOCKET"

# Runs "$@" (a command or function) and restarts it with a backoff when it exits.
# Meant to run as a background job; SIGTERM stops the child and the loop.
supervise() {
    local name=$1
    shift
    local delay=1 child="" started rc
    trap '[[ -n $child ]] && kill -TERM "$child" 2>/dev/null; exit 0' TERM
    while :; do
        started=$SECONDS
        "$@" &
        child=$!
        wait "$child"
        rc=$?
        child=""
        # A run that lasted a minute was healthy: start the backoff over.
        if ((SECONDS - started > 60)); then delay=1; fi
        log "$name exited with status $rc; restarting in ${delay}s"
        sleep "$delay" &
        wait $!
        delay=$((delay * 2 > 30 ? 30 : delay * 2))
    done
}

run_agent() {
    exec /opt/corral/venv/bin/python -m agent
}

# Started first, the agent says hello and starts Playwright while Xvnc comes up
# (a recovering device is ready as soon as both are, not one after the other);
# it launches Chromium as soon as the display's socket exists.
supervise agent run_agent &

Xvnc "$DISPLAY" -rfbunixpath "$VNC_SOCKET" -rfbunixmode 0600 -rfbport -1 \
    -nolisten tcp -nolisten local -SecurityTypes None -AlwaysShared \
    -geometry "${width}x${height}" -depth "$depth" \
    -desktop "${CORRAL_DEVICE_NAME:-corral}" &
xvnc_pid=$!

/usr/bin/python3 -I /opt/corral/xready.py "$DISPLAY" 15 &
wait $!
ready=$?
if ((ready != 0)) || ! kill -0 "$xvnc_pid" 2>/dev/null; then
    log "Xvnc did not come up on $DISPLAY"
    stop_all
    exit 1
fi
log "Xvnc ready on $DISPLAY (${width}x${height}x${depth}), VNC at $VNC_SOCKET"

wait "$xvnc_pid"
rc=$?
log "Xvnc exited with status $rc; stopping the device"
stop_all
exit $((rc == 0 ? 1 : rc))
