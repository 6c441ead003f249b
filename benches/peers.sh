#!/usr/bin/env bash
# netns-kit side by side with nlink 0.33 (benches/peers/nlink), the closest peer crate, on the
# same work: `benches/peers.sh [N ...]` (as root; default N: 100 1000; ROUNDS=5).
#
# Both build a bridge `br0` and N members (a namespace each, a veth pair to the bridge, an
# address, a default route), then delete it all until only `lo` is left; "bridged" with
# netns-kit's anonymous namespaces (nlink has none: it names them), "named" with names under
# /run/netns for both. Round by round, alternating, each round in a fresh private network and
# mount namespace. Prints the medians and `ratio <scenario> N=<n> <phase> netns-kit/nlink: x`.
# netns-kit's setup includes its readiness wait (the first packet is never lost); nlink has none.
#
# A third program, the kernel's floor (benches/peers/floor), builds the same network with no
# library: hand-built rtnetlink requests, batched, one thread per CPU, no readiness wait. Its time
# is the least any library can take here; `ratio ... floor/nlink` is the best a ratio against
# nlink can be on this machine, `ratio ... netns-kit/floor` how far netns-kit is above it. (Its
# teardown is shown, not a floor: it waits for the namespaces' own cleanup.)
#
# `benches/peers.sh --runtime` runs the topology bench's "runtime ADD" scenario (one process per
# container, exec to exit) with three more children: the floor (`floor-peer runtime`, and with
# `--guarded` the floor that keeps netns-kit's promises), for the lines
# `ratio runtime N=1 add floor/cni-bridge`, `... floor-guarded/cni-bridge`,
# `... netns-kit-blocking/floor` and `... netns-kit-blocking/floor-guarded`, and
# `benches/peers/adder`, netns-kit in a binary built the way a runtime would ship it, for the
# lines `... netns-kit-shipped/cni-bridge` and `... netns-kit-shipped/floor-guarded`.
#
# `benches/peers.sh --dual-stack [N]` runs the topology bench's dual-stack scenario (default
# N=500) with the floor's own IPv4-only and dual-stack builds alternating with netns-kit's, for
# the line `ratio bridged N=<n> setup floor dual-stack/ipv4-only`: what dual-stack costs the
# kernel itself on this machine (with the same router-message filter netns-kit makes).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
runtime=
dual=
if [ "${1:-}" = --runtime ]; then
  runtime=1
  shift
elif [ "${1:-}" = --dual-stack ]; then
  [ $# -le 2 ] || { echo "usage: benches/peers.sh --dual-stack [N]" >&2; exit 2; }
  dual=${2:-500}
  shift $#
fi
sizes=${*:-100 1000}
# The bench's own executable, as cargo reports it (`ls -t` could pick the integration test of
# the same name).
ours=$(cargo build --release --bench topology -q --message-format=json |
  sed -n 's/.*"kind":\["bench"\].*"executable":"\([^"]*\)".*/\1/p' | tail -1)
cargo build --release -q --manifest-path benches/peers/nlink/Cargo.toml --target-dir target/peers
# The floor and `adder` (a runtime's one-container ADD as its own small binary, blocking API
# only) are built as a short-lived program is best built: size-optimised with fat LTO (their Cargo.toml) and linked
# statically (a static PIE), so that no dynamic loader runs at exec (the CNI reference plugins,
# Go programs, are static too). Where that fails (glibc's static archive missing, say), they are
# built again as usual. `adder` gets the workspace's lock file, so that it is built from the
# same versions as the library's own tests and benches.
triple=$(rustc -vV | sed -n 's/^host: //p')
short_lived() { # crate, binary -> sets $built to the binary's path
  built=$PWD/target/peers/$triple/release/$2
  if ! RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q \
    --manifest-path "benches/peers/$1/Cargo.toml" --target "$triple" --target-dir target/peers; then
    echo "peers.sh: $1 could not be built statically (above); building it as usual" >&2
    cargo build --release -q --manifest-path "benches/peers/$1/Cargo.toml" --target-dir target/peers
    built=$PWD/target/peers/release/$2
  fi
}
short_lived floor floor-peer
floor=$built
nlink=target/peers/release/nlink-peer
if [ -n "$runtime" ]; then
  cp Cargo.lock benches/peers/adder/Cargo.lock
  short_lived adder adder
  NETNS_KIT_BENCH_FLOOR="$floor" NETNS_KIT_BENCH_ADDER="$built" exec "$ours" --bench --runtime
fi
if [ -n "$dual" ]; then
  NETNS_KIT_BENCH_FLOOR="$floor" exec "$ours" --bench --dual-stack "$dual"
fi
out=$(mktemp)
log=target/peers/nlink-peer.log
: >"$log"
trap 'rm -f "$out"' EXIT
for n in $sizes; do
  for scenario in bridged named; do
    for _ in $(seq "$rounds"); do
      "$ours" --peer "$scenario" "$n" 1 >>"$out"
      # The same pause before each round as netns-kit's (its `settle`: 0.5 s + 3 ms per
      # member), for the kernel to finish freeing the previous round's namespaces.
      pause=$(awk -v n="$n" 'BEGIN { print 0.5 + 0.003 * n }')
      unshare --net --mount --propagation private -- bash -c \
        'mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && ip link set lo up && sleep "$1" && shift && "$@"' \
        peer "$pause" "$nlink" "$scenario" "$n" 1 2>>"$log" >>"$out" ||
        { echo "nlink-peer failed: see $log" >&2; exit 1; }
      unshare --net --mount --propagation private -- bash -c \
        'mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && ip link set lo up && sleep "$1" && shift && "$@"' \
        peer "$pause" "$floor" "$scenario" "$n" 1 2>>"$log" >>"$out" ||
        { echo "floor-peer failed: see $log" >&2; exit 1; }
    done
  done
done
# Lines: "<tool> <scenario> N=<n> setup_ms=<x> teardown_ms=<y>".
awk '
  function median(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  {
    split($4, s, "="); split($5, d, "=")
    key = $2 " " $3
    setup[$1, key] = setup[$1, key] " " s[2]; down[$1, key] = down[$1, key] " " d[2]
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
  }
  END {
    for (i = 1; i <= n; i++) {
      key = order[i]
      ks = median(setup["netns-kit", key]); ns = median(setup["nlink", key])
      kd = median(down["netns-kit", key]); nd = median(down["nlink", key])
      fs = median(setup["floor", key]); fd = median(down["floor", key])
      printf "  %-16s setup    netns-kit %8.1f ms  nlink %8.1f ms  floor %8.1f ms\n", key, ks, ns, fs
      printf "  %-16s teardown netns-kit %8.1f ms  nlink %8.1f ms  floor %8.1f ms\n", key, kd, nd, fd
      r = r sprintf("ratio %s setup netns-kit/nlink: %.2f\n", key, ks / ns)
      r = r sprintf("ratio %s setup floor/nlink: %.2f\n", key, fs / ns)
      r = r sprintf("ratio %s setup netns-kit/floor: %.2f\n", key, ks / fs)
      r = r sprintf("ratio %s teardown netns-kit/nlink: %.2f\n", key, kd / nd)
    }
    printf "\n%s", r
  }' "$out"
