#!/usr/bin/env bash
# Where the crate's threads wait: `benches/offcpu.sh [BENCH ARGS...]` (as root; `perf` and
# `python3` needed) runs the topology bench with BENCH ARGS (default: `--dual-stack 500
# ipv4-only`, five builds of 500 members) under `perf record -a -e sched:sched_switch -g`,
# then prints, for the crate's threads (`netns-kit-*`) and the bench's own, the kernel stacks
# they blocked in, by total time off the CPU.
#
# A wait the kernel does while holding the RTNL lock (`synchronize_rcu_expedited`,
# `rcu_barrier`) makes every other netlink request of the host wait too (those show up as
# `__mutex_lock < rtnl_*`): this is how the three expedited grace periods per member of
# 2026-12-07 were found (see benches/README.md). Other examples of BENCH ARGS:
# `--peer bridged 100 5`, `--runtime`.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--dual-stack 500 ipv4-only)
# The bench's own executable, as cargo reports it (`ls -t` could pick the integration test of
# the same name).
bench=$(cargo build --release --bench topology -q --message-format=json |
  sed -n 's/.*"kind":\["bench"\].*"executable":"\([^"]*\)".*/\1/p' | tail -1)
data=$(mktemp)
trap 'rm -f "$data"' EXIT
perf record -q -a -e sched:sched_switch -g -o "$data" -- "$bench" --bench "${args[@]}"
perf script -i "$data" -F comm,tid,cpu,time,event,trace,ip,sym 2>/dev/null | python3 -c '
import collections, re, sys

SKIP = {"__schedule", "schedule", "schedule_timeout", "schedule_preempt_disabled",
        "preempt_schedule_common", "__cond_resched", "io_schedule",
        "schedule_hrtimeout_range_clock", "schedule_hrtimeout_range"}
HEADER = re.compile(r"\s(\d+\.\d+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) "
                    r".*prev_state=(\S+) ==> next_comm=.*? next_pid=(\d+)")
away = {}  # tid -> (time it blocked, where)
total = collections.Counter()
count = collections.Counter()

def switch(lines):
    m = HEADER.search(lines[0])
    if not m:
        return
    t, comm, prev, state, nxt = float(m[1]), m[2], int(m[3]), m[4], int(m[5])
    frames = [l.split()[1].split("+")[0] for l in lines[1:] if len(l.split()) >= 2]
    frames = [f for f in frames if f not in SKIP and not f.startswith("[")]
    ours = comm.startswith("netns-kit") or comm.startswith("topology")
    if ours and not state.startswith("R"):
        away[prev] = (t, " < ".join(frames[:5]))
    if nxt in away:
        since, where = away.pop(nxt)
        total[where] += t - since
        count[where] += 1

block = []
for line in sys.stdin:
    if line.strip():
        block.append(line.rstrip())
    elif block:
        switch(block)
        block = []
if block:
    switch(block)
print("off-CPU ms   times  kernel stack (innermost first)")
for where, seconds in total.most_common(20):
    print(f"{seconds * 1000:10.0f} {count[where]:7d}  {where[:160]}")
'
