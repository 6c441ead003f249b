#!/usr/bin/env bash
# Podman (CNI backend) runs containers on a network whose `bridge` plugin is MODE: `ours`
# (netns-kit-cni installed as `bridge` in a plugin directory searched first) or `reference`.
# Run inside a private network and mount namespace (tests/podman.rs does: unshare); prints
# one `key: value` line per check. OURS is the plugin binary.
#
# `bench N` instead times `podman run --rm --network web --rootfs DIR /bin/true` N times per
# plugin, alternating (ours installed as `bridge`, then removed), and prints one
# `run ours|reference MS` line per run (benches/podman.rs reads them).
set -euo pipefail
MODE=$1
# Nothing written outside this mount namespace: Podman's, crun's, libcni's and host-local's
# state (/run, /var/lib/cni) and Podman's shared-memory locks (/dev/shm) on tmpfs mounts of
# its own; containers without cgroups (--cgroups=disabled: none made on the host). The caller
# runs this in a PID namespace of its own too (unshare --pid --fork --kill-child), so no
# process it started (conmon, a container) outlives it.
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /dev/shm
mkdir -p /run/netns /var/lib/cni
# crun refuses a cgroup2 "hybrid" mount beside the v1 controllers.
umount /sys/fs/cgroup/unified 2>/dev/null || true
ip link set lo up
T=$(mktemp -d /run/netns-kit-podman.XXXXXX)
mkdir -p "$T"/{root,runroot,net.d,plugins,tmp,rootfs/bin,rootfs/www}
cp /bin/busybox "$T/rootfs/bin/busybox"
for c in sh true httpd ping ip cat sleep; do ln -s busybox "$T/rootfs/bin/$c"; done
echo "hello from podman" > "$T/rootfs/www/index.html"
if [ "$MODE" = bench ]; then
  :
elif [ "$MODE" = ours ]; then
  cat > "$T/plugins/bridge" <<WRAP
#!/bin/sh
echo "\$CNI_COMMAND" >> "$T/ours.log"
exec "$OURS" "\$@"
WRAP
  chmod 755 "$T/plugins/bridge"
fi
cat > "$T/containers.conf" <<CONF
[containers]
# No CAP_SYS_RESOURCE here: the defaults would raise the limits.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$T/plugins", "/usr/lib/cni"]
network_config_dir = "$T/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$T/tmp"
CONF
export CONTAINERS_CONF=$T/containers.conf
P=(podman --root "$T/root" --runroot "$T/runroot" --storage-driver vfs)
"${P[@]}" network create --subnet 10.90.0.0/24 web >/dev/null
if [ "$MODE" = bench ]; then
  run() { "${P[@]}" run --rm --cgroups=disabled --network web --rootfs "$T/rootfs" /bin/true >/dev/null; }
  run  # the bridge and the image-less storage are made once, untimed
  for i in $(seq "${2:-10}"); do
    for who in ours reference; do
      if [ "$who" = ours ]; then cp "$OURS" "$T/plugins/bridge"; else rm -f "$T/plugins/bridge"; fi
      start=$(date +%s%N)
      run
      echo "run $who $(( ($(date +%s%N) - start) / 1000 ))"
    done
  done
  "${P[@]}" network rm -f web >/dev/null
  exit 0
fi
echo "inspect: $("${P[@]}" network inspect web --format '{{range .Subnets}}{{.Subnet}}{{end}}')"
if "${P[@]}" network create --subnet 10.90.0.0/24 web2 >/dev/null 2>&1; then
  echo "conflict: accepted"
else
  echo "conflict: refused"
fi
"${P[@]}" run -d --cgroups=disabled --name web1 --network web -p 8080:80 --rootfs "$T/rootfs" \
  /bin/httpd -f -p 80 -h /www >/dev/null
body=""
for _ in $(seq 50); do
  body=$(curl -s --max-time 1 http://10.90.0.1:8080/ || true)
  [ -n "$body" ] && break
  sleep 0.1
done
echo "published: $body"
echo "localhost: $(curl -s --max-time 2 http://127.0.0.1:8080/ || true)"
if "${P[@]}" run --rm --cgroups=disabled --network web --rootfs "$T/rootfs" /bin/ping -c 1 -W 2 10.90.0.1 >/dev/null; then
  echo "ping gateway: ok"
else
  echo "ping gateway: failed"
fi
"${P[@]}" rm -f -t 0 web1 >/dev/null
echo "veths left: $(ip -o link show type veth | wc -l)"
echo "leases left: $(find /var/lib/cni/networks -type f ! -name lock ! -name 'last_reserved_ip*' 2>/dev/null | wc -l)"
echo "masquerade chains left: $(iptables-save -t nat | grep -cE '^:CNI-[0-9a-f]{24} ' || true)"
if [ "$MODE" = ours ]; then
  echo "ours ran: $(sort -u "$T/ours.log" | tr '\n' ' ')"
fi
"${P[@]}" network rm -f web >/dev/null
