#!/usr/bin/env bash
# Where a bridged member's time goes: `benches/profile.sh [N] [--blocking]` (as root).
#
# 1. The bench's profile mode: one bridged network of N members (after a warm-up build), with
#    every span of the crate timed — the time per step, per member.
# 2. The same under `strace -f -c`: the syscalls per member (both builds counted, so divided by
#    2N), the netlink ones among them (sendto/sendmsg/recvfrom/recvmsg), and the namespace and
#    mount ones (unshare, setns, mount).
# Changes nothing outside: the bench runs itself in a private network and mount namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
shift || true
# The bench's own executable, as cargo reports it (`ls -t` could pick the integration test of
# the same name).
bin=$(cargo build --release --bench topology -q --message-format=json |
  sed -n 's/.*"kind":\["bench"\].*"executable":"\([^"]*\)".*/\1/p' | tail -1)
"$bin" --profile "$n" "$@"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
strace -f -c -o "$out" "$bin" --profile "$n" "$@" >/dev/null
# strace -c rows: "% time, seconds, usecs/call, calls, [errors,] syscall".
grep -E '^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+ ' "$out" | grep -v ' total$' | awk -v n="$n" '
  { count[$NF] = $4; total += $4 }
  END {
    per = 2 * n
    printf "syscalls per member (strace -f -c over %d members built): %.1f\n", per, total / per
    netlink = count["sendto"] + count["sendmsg"] + count["recvfrom"] + count["recvmsg"]
    printf "  socket I/O (sendto, sendmsg, recvfrom, recvmsg; netlink nearly all): %.1f\n", netlink / per
    printf "  unshare %.2f, setns %.2f, clone3 %.2f, mount %.2f\n", \
      count["unshare"] / per, count["setns"] / per, count["clone3"] / per, count["mount"] / per
    for (s in count) printf "  %-16s %6.1f\n", s, count[s] / per | "sort -k2 -n -r | head -10"
  }'
