"""The soak's end checks and its tally of faults (see bench/soak.py)."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.report import Report
from bench.soak_farm import hub_listeners, open_paths_under, processes_with_env
from bench.soak_model import FAULTS, SHOULD_RUN, TERMINAL_JOBS, View, device_of, farm_differences, within

if TYPE_CHECKING:
    from bench.soak import Soak

__all__ = ["check_all", "tally"]


def check_all(soak: Soak, report: Report, view: View, jobs: list[Any] | None) -> None:
    devices = view.devices or {}
    if jobs is None or view.devices is None:
        report.error("the database could not be read at the end")
    jobs = jobs or []
    pending = [f"#{j.id} {j.kind} {j.state}" for j in jobs if j.state not in TERMINAL_JOBS]
    report.check(
        "jobs_terminal",
        not pending and bool(jobs),
        f"{len(jobs)} jobs: {dict(Counter(j.state for j in jobs))}"
        if not pending
        else f"not terminal: {pending[:10]}",
    )
    problems = farm_differences(devices, view.containers)
    running = sum(1 for c in view.containers.values() if c.status == "running")
    report.check(
        "docker_matches_database",
        not problems and view.devices is not None,
        "; ".join(problems[:10]) or f"{running} containers running, as many devices should run",
    )
    live = soak.live(view)
    not_ready = [f"{d.name} {d.state} {d.reason or ''}".strip() for d in live if not view.ready(d.id)]
    report.check(
        "live_devices_ready",
        not not_ready and bool(live),
        f"not ready (or agent not connected): {not_ready}"
        if not_ready
        else f"{len(live)} ready, agents connected",
    )
    check_leftovers(soak, report, view)
    check_host(soak, report, len(live))
    lost = [f"#{w.number} {w.fault}: {w.detail}" for w in soak.watches if w.outcome == "lost"]
    report.check(
        "faults_survived",
        not lost and bool(soak.watches),
        "; ".join(lost[:10]) or f"{sum(w.outcome == 'survived' for w in soak.watches)} survived",
    )


def check_leftovers(soak: Soak, report: Report, view: View) -> None:
    devices = view.devices or {}
    removed = sorted(d.id for d in devices.values() if d.state == "removed")
    dirs = [d for d in removed if soak.settings.device_dir(d).exists()]
    holders = open_paths_under(str(soak.settings.devices_root))
    stray = sorted(
        {
            f"{name} (pid {pid}): {link}"
            for pid, (name, link) in holders.items()
            if device_of(link, soak.settings) in removed
        }
    )
    active = sum(1 for d in devices.values() if d.state in SHOULD_RUN)
    listeners = hub_listeners(soak.host.pid) if soak.host.alive() else -1
    clean = not dirs and not stray and listeners == active
    report.check(
        "removed_devices_clean",
        clean,
        f"{len(removed)} removed: runtime dirs left {dirs}, processes holding their files {stray}; "
        f"host hub listeners {listeners} for {active} devices that should run",
    )
    marker = f"CORRAL_DATA_DIR={soak.settings.data_dir}"
    ours = soak.host.tree() if soak.host.alive() else set()
    orphans = {
        pid: name
        for pid, name in processes_with_env(marker).items()
        if pid not in ours and name != "postgres"
    }
    report.check(
        "no_orphan_processes",
        not orphans,
        f"left by killed hosts: {orphans}"
        if orphans
        else f"{soak.host.generation} hosts started, none left a process",
    )


def check_host(soak: Soak, report: Report, devices: int) -> None:
    baseline = soak.host.baseline
    if baseline is None or not soak.host.alive():
        report.check("host_fds_within_10pct", False, "the last host has no one-minute sample")
        report.check("host_rss_within_10pct", False, "the last host has no one-minute sample")
        return
    final = soak.host.sample(devices)
    where = (
        f"host pid {soak.host.pid} (host #{soak.host.generation}; a restarted host is a new process, "
        f"so measured from its own first minute), {baseline.devices} devices then, {final.devices} now"
    )
    report.figure("host_fds_1min", baseline.fds, "fds", label="host fds one minute after it started")
    report.figure("host_fds_end", final.fds, "fds", label="host fds at the end")
    report.figure(
        "host_rss_1min_mib", baseline.rss / 2**20, "MiB", label="host RSS one minute after it started"
    )
    report.figure("host_rss_end_mib", final.rss / 2**20, "MiB", label="host RSS at the end")
    report.check(
        "host_fds_within_10pct",
        within(baseline.fds, final.fds),
        f"{baseline.fds} -> {final.fds}; {where}",
    )
    report.check(
        "host_rss_within_10pct",
        within(baseline.rss, final.rss),
        f"{baseline.rss / 2**20:.1f} -> {final.rss / 2**20:.1f} MiB; {where}",
    )


def tally(soak: Soak, report: Report) -> None:
    print(
        f"\n{'fault':<18}{'injected':>9}{'survived':>9}{'lost':>6}{'superseded':>11}{'skipped':>8}"
        "   recovery s (median, max)"
    )
    slowest = {}
    for fault in FAULTS:
        mine = [w for w in soak.watches if w.fault == fault]
        outcomes = Counter(w.outcome for w in mine)
        times = [w.recovered_after for w in mine if w.recovered_after is not None]
        spread = f"{statistics.median(times):.1f}, {max(times):.1f}" if times else "-"
        print(
            f"{fault:<18}{len(mine):>9}{outcomes['survived']:>9}{outcomes['lost']:>6}"
            f"{outcomes['superseded']:>11}{soak.skipped[fault]:>8}   {spread}"
        )
        counts = {"injected": len(mine), "skipped": soak.skipped[fault]}
        report.detail(f"{fault}_counts", counts | {k: v for k, v in outcomes.items() if k})
        if times:
            slowest[fault] = max(times)
    print()
    for fault, seconds in slowest.items():
        report.figure(f"{fault}_recovery_max_s", seconds, "s", label=f"{fault}: slowest recovery")
    if soak.restart_seconds:
        report.figure(
            "host_restart_max_s",
            max(soak.restart_seconds),
            "s",
            label="new host serving after a SIGKILL, slowest",
        )
    report.detail(
        "faults",
        [
            w.__dict__
            | {
                "at": round(w.at - soak.started, 1),  # seconds into the fault phase, as printed
                "agents_before": sorted(w.agents_before),
                "ready_before": sorted(w.ready_before),
            }
            for w in soak.watches
        ],
    )
    report.detail("injection_errors", soak.injection_errors)
