#!/usr/bin/env bash
# The conformance scenario of a Kante host (docs/debian-vm.md): one row per step,
#   ROW|<step>|<pass|FAIL|no|n/a>|<seconds>|<note>
# pass: shown to work; FAIL: broken (exit status 1); no: shown not to work here, the note
# says why (the kernel or Kante lacks it); n/a: cannot be run in this mode.
#   KANTE_CONF_MODE=vm    kanted is (made) the systemd service at /var/lib/kante: the first
#                         step is README's command 1 with the built binaries of KANTE_BIN_DIR
#                         (scripts/debian-vm.sh runs it so in the VM)
#   KANTE_CONF_MODE=host  a private kanted of target/release (KANTE_DIR under /var/tmp) on a
#                         shared host: nothing installed, restarts done by this script
# KANTE_CONF_ONLY="step step" runs only those steps (after the setup ones).
# KANTE_CONF_PHASE=before-reboot stops before `delete`; after-reboot (run by
# scripts/debian-vm.sh once the VM rebooted, KANTE_CONF_REBOOT_SECS long) checks the
# instances came back, then deletes.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${KANTE_CONF_MODE:-vm}
PHASE=${KANTE_CONF_PHASE:-all}
ONLY=${KANTE_CONF_ONLY:-}
IMAGES=${KANTE_IMAGE_CACHE:-/var/cache/kante/images}
TAG=kc$$ # names of host objects this run makes (interfaces, namespaces)
FAILED=0
STEPLOG=$(mktemp /tmp/kante-conformance.XXXXXX)

if [ "$MODE" = vm ]; then
  export KANTE_DIR=/var/lib/kante
  KANTE=/usr/local/bin/kante
else
  export KANTE_DIR=${KANTE_DIR:-$(mktemp -d /var/tmp/kante-conformance.XXXXXX)}
  KANTE=${KANTE:-$PWD/target/release/kante}
  KANTED=${KANTED:-$PWD/target/release/kanted}
fi
K() { "$KANTE" "$@"; }
kx() { K exec "$1" -- sh -c "$2"; }
now() { date +%s.%N; }

# step NAME FUNCTION: runs FUNCTION with errexit in a subshell; its last output line
# is the note. A function may end with `echo NO: reason` (status no) or `echo NA: why`.
step() {
  local name=$1 fn=$2 t0 t1 rc note status
  if [ -n "$ONLY" ] && [ "${3:-}" != always ] && ! [[ " $ONLY " == *" $name "* ]]; then
    return 0
  fi
  t0=$(now)
  ( set -e; "$fn" ) >"$STEPLOG" 2>&1
  rc=$?
  t1=$(now)
  note=$(grep -v '^\s*$' "$STEPLOG" | tail -n1 | tr '|' '/' | cut -c1-300)
  if [ $rc = 0 ]; then
    case "$note" in
      NO:*) status=no note=${note#NO: } ;;
      NA:*) status=n/a note=${note#NA: } ;;
      *) status=pass ;;
    esac
  else
    status=FAIL
    FAILED=1
    sed 's/^/    | /' "$STEPLOG" >&2
  fi
  printf 'ROW|%s|%s|%.1f|%s\n' "$name" "$status" "$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")" "$note"
}

api_up() {
  for _ in $(seq 300); do K list >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "kanted does not answer" >&2
  return 1
}
wait_running() { # a Debian guest's systemd, up to 5 minutes under emulation
  local s deadline=$((SECONDS + 300))
  while :; do
    s=$(timeout 300 "$KANTE" exec "$1" -- systemctl is-system-running --wait 2>&1 || true)
    case "$s" in
      running | degraded)
        echo "$s"
        return 0
        ;;
      *"Failed to connect to bus"* | "") ;; # its manager is not listening yet
      *) break ;;
    esac
    [ $SECONDS -lt $deadline ] || break
    sleep 1
  done
  echo "systemd in $1: $s" >&2
  return 1
}
init_pid() { K list "$1" -c p -f csv | tr -d '[:space:]'; }
# The directory of INSTANCE's cgroup that holds CONTROLLER: the v1 hierarchy of that
# controller on a hybrid host, else the unified one (pure cgroup v2).
cgdir() {
  local pid rel line
  pid=$(init_pid "$1")
  line=$(grep -E "^[0-9]+:([^:]*,)?$2(,[^:]*)?:" "/proc/$pid/cgroup" || true)
  if [ -n "$line" ]; then
    rel=$(echo "$line" | cut -d: -f3 | cut -d/ -f2,3)
    echo "/sys/fs/cgroup/$(echo "$line" | cut -d: -f2)/$rel"
  else
    rel=$(grep '^0::' "/proc/$pid/cgroup" | cut -d: -f3 | cut -d/ -f2,3)
    echo "$(findmnt -n -o TARGET -t cgroup2 | head -n1)/$rel"
  fi
}
# cgval INSTANCE CONTROLLER V2_FILE V1_FILE
cgval() {
  local d
  d=$(cgdir "$1" "$2")
  if [ -e "$d/$3" ]; then cat "$d/$3"; else cat "$d/$4"; fi
}
how_in_kernel() { # (once it worked) a loaded module has a reference count, a built-in not
  if [ -e "/sys/module/$1/refcnt" ]; then echo "a module"; else echo "built in"; fi
}
expect() { # expect WHAT GOT WANT
  [ "$2" = "$3" ] || {
    echo "$1: got '$2', want '$3'" >&2
    return 1
  }
}

# ---- daemon control ---------------------------------------------------------------

# host mode: the private kanted's pid, in a file (steps run in subshells)
PIDFILE=$STEPLOG.kanted
host_start() {
  mkdir -p "$KANTE_DIR"
  KANTE_DIR=$KANTE_DIR setsid "$KANTED" >>"$KANTE_DIR.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  api_up
}
host_stop() { # host_stop SIGNAL: the private kanted, and wait until it is gone
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  kill "-$1" "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}
daemon_pid() {
  if [ "$MODE" = vm ]; then systemctl show -p MainPID --value kanted; else cat "$PIDFILE"; fi
}

# ---- steps ------------------------------------------------------------------------

s_readme() {
  # README's first command as a new user runs it, the build replaced by built binaries
  KANTE_BIN_DIR=/root/kante/bin ./scripts/demo.sh
  K list c1 -c ns -f csv | grep -qx 'c1,RUNNING'
  wait_running c1 >/dev/null
  echo "demo.sh (KANTE_BIN_DIR): c1 RUNNING, kanted.service $(systemctl is-active kanted)"
}

s_images() {
  if [ "$MODE" = host ]; then
    host_start
    K image import "$IMAGES/debian-bookworm-amd64.tar.zst" --alias debian/12
  fi
  K image build busybox --alias busybox
  echo "images: $(K image list -f csv | wc -l)"
}

s_launch() {
  K launch busybox b1 -c limits.memory=128MiB -c limits.processes=64 \
    -c limits.cpu.allowance=20ms/100ms
  if [ "$MODE" = host ]; then K launch debian/12 c1 --wait --timeout 300; fi
  wait_running c1 >/dev/null
  # limits set live on the running Debian guest
  K config set c1 limits.memory=256MiB limits.cpu=1 limits.cpu.allowance=50ms/100ms \
    limits.processes=500
  K list -c ns -f csv | tr '\n' ' '
}

s_limits() {
  local layout=hybrid
  [ -z "$(findmnt -n -t cgroup)" ] && layout="pure v2"
  expect "b1 memory" "$(cgval b1 memory memory.max memory.limit_in_bytes)" 134217728
  expect "b1 pids" "$(cgval b1 pids pids.max pids.max)" 64
  expect "c1 memory" "$(cgval c1 memory memory.max memory.limit_in_bytes)" 268435456
  expect "c1 pids" "$(cgval c1 pids pids.max pids.max)" 500
  local d
  d=$(cgdir c1 cpu)
  if [ -e "$d/cpu.max" ]; then
    expect "c1 cpu.max" "$(cat "$d/cpu.max")" "50000 100000"
    expect "b1 cpu.max" "$(cgval b1 cpu cpu.max x)" "20000 100000"
  else
    expect "c1 cfs quota" "$(cat "$d/cpu.cfs_quota_us")" 50000
  fi
  local cpus
  cpus=$(cgval c1 cpuset cpuset.cpus cpuset.cpus)
  [ -n "$cpus" ] && ! [[ "$cpus" == *[,-]* ]] || {
    echo "c1 cpuset.cpus: '$cpus'" >&2
    return 1
  }
  echo "$layout: memory, pids, cpu quota and cpuset ($cpus) as set, in $d"
}

s_lxcfs() {
  local mem n bmem
  mem=$(K exec c1 -- free -b | awk '/^Mem:/{print $2}')
  expect "free in c1" "$mem" 268435456
  n=$(K exec c1 -- nproc)
  expect "nproc in c1" "$n" 1
  # busybox's free asks sysinfo(2), which lxcfs cannot answer: its /proc/meminfo
  bmem=$(K exec b1 -- awk '/^MemTotal:/{print $2}' /proc/meminfo)
  expect "MemTotal in b1 (KiB)" "$bmem" 131072
  echo "free and nproc inside show the limits (c1: $mem bytes, $n CPU; b1: $bmem KiB)"
}

s_exec() {
  local state cg rc=0
  state=$(K exec c1 -- systemctl is-system-running || true)
  K exec b1 -- sh -c 'exit 7' || rc=$?
  expect "exit status" "$rc" 7
  # the command runs inside the guest's cgroup, not the daemon's (limits, lxcfs)
  cg=$(K exec c1 -- cat /proc/self/cgroup)
  if [[ "$cg" == *..* ]]; then
    echo "exec'd command outside the guest's cgroup: $cg" >&2
    return 1
  fi
  expect "user" "$(K exec c1 --user 65534 -- id -u)" 65534
  echo "exit status kept, cgroup '$(echo "$cg" | tail -n1)', systemd $state"
}

s_files() {
  local f
  f=$(mktemp)
  head -c 1048576 /dev/urandom >"$f"
  K file push "$f" c1/root/blob
  K file push "$f" b1/blob
  K file pull c1/root/blob "$f.c1"
  K file pull b1/blob "$f.b1"
  cmp "$f" "$f.c1" && cmp "$f" "$f.b1"
  expect owner "$(K exec c1 -- stat -c %u:%g /root/blob)" 0:0
  rm -f "$f" "$f.c1" "$f.b1"
  echo "1 MiB pushed and pulled, identical (Debian and busybox guests)"
}

s_stop_start() {
  K stop c1
  K list c1 -c s -f csv | grep -qx STOPPED
  K start c1
  wait_running c1 >/dev/null
  expect "c1 memory after restart" "$(cgval c1 memory memory.max memory.limit_in_bytes)" 268435456
  echo "c1 stopped, started, systemd running again, limits kept"
}

restart_check() { # restart_check HOW
  local before old after
  before=$(init_pid c1)
  old=$(daemon_pid)
  case "$1" in
    restart)
      if [ "$MODE" = vm ]; then systemctl restart kanted; else
        host_stop TERM
        host_start
      fi
      ;;
    kill9)
      if [ "$MODE" = vm ]; then
        kill -9 "$old"
        for _ in $(seq 300); do
          [ "$(daemon_pid)" != "$old" ] && [ "$(daemon_pid)" != 0 ] && break
          sleep 0.2
        done
      else
        host_stop KILL
        host_start
      fi
      ;;
  esac
  api_up
  after=$(init_pid c1)
  expect "c1's init across the daemon's restart" "$after" "$before"
  K exec c1 -- true
  K list b1 -c s -f csv | grep -qx RUNNING
  local by="this script"
  [ "$MODE" = vm ] && by="systemd ($(systemctl show -p NRestarts --value kanted) restarts)"
  echo "kanted $old -> $(daemon_pid) by $by; c1 (init $after) and b1 kept running"
}
s_restart() { restart_check restart; }
s_kill9() { restart_check kill9; }

s_btrfs() {
  local how="built in"
  if [ -e /sys/module/btrfs/refcnt ]; then # a module: out again if unused (Debian's
    modprobe -r btrfs 2>/dev/null || true  # udev may have loaded it at boot)
    how="a module, $([ -d /sys/module/btrfs ] && echo "in use before" || echo "unloaded, then loaded by the pool's mount")"
  fi
  K storage create fast btrfs size=2GiB
  grep -qw btrfs /proc/filesystems
  K launch busybox bt1 -s fast
  expect "fs magic of bt1's root" "$(K exec bt1 -- stat -f -c %t /)" 9123683e
  K exec bt1 -- sh -c 'echo data > /f && sync && cat /f' | grep -qx data
  K snapshot bt1 s0
  K delete -f bt1
  K storage delete fast
  echo "btrfs ($how): guest root on btrfs, snapshot, delete"
}

s_nesting() {
  K launch debian/12 n1 -c security.nesting=true -c security.syscalls.intercept.mknod=true \
    -c security.syscalls.intercept.setxattr=true
  wait_running n1 >/dev/null
  kx n1 "unshare -U -r -n -m -p -f --mount-proc sh -c 'mount -t sysfs sysfs /sys'"
  # overlayfs with a whiteout on tmpfs, in the guest and in a nested user namespace
  local ov='set -e; d=$(mktemp -d); mount -t tmpfs tmpfs $d; cd $d; mkdir l u w m;
    echo hi > l/f; mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m;
    cat m/f; rm m/f; stat -c "%F %t:%T" u/f; umount m; cd /; umount $d'
  kx n1 "$ov" | grep -q 'character special file 0:0'
  kx n1 "unshare -U -r -m sh -c '$ov'" | grep -q 'character special file 0:0'
  kx n1 'mkdir /sys/fs/cgroup/nested && sh -c "echo \$\$ > /sys/fs/cgroup/nested/cgroup.procs; grep -x 0::/nested /proc/self/cgroup" && rmdir /sys/fs/cgroup/nested'
  kx n1 'cd /tmp && mknod null c 1 3 && stat -c "%t:%T" null' | grep -qx 1:3
  kx n1 'ip link add br9 type bridge && ip link del br9'
  K delete -f n1
  echo "nested user+pid+net namespaces with proc/sysfs, overlayfs (also in a nested userns), nested cgroup, mknod and bridge"
}

s_devices() {
  K launch busybox p1 -c security.privileged=true
  local out
  out=$(kx p1 'mknod /x b 7 0 && echo made; head -c1 /x; echo ok > /dev/null && echo null-ok' 2>&1 || true)
  echo "$out"
  [[ "$out" == *made* ]] && [[ "$out" == *"Operation not permitted"* ]] && [[ "$out" == *null-ok* ]]
  K delete -f p1
  local how="v1 devices controller + BPF program"
  [ -z "$(findmnt -n -t cgroup)" ] && how="cgroup-v2 BPF device program alone"
  echo "privileged guest: mknod b 7 0 made but open refused, /dev/null works ($how)"
}

s_idmap() {
  local pid opts
  pid=$(init_pid c1)
  opts=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo" | head -n1)
  [[ "$opts" == *idmapped* ]] || {
    echo "c1's root mount: $opts" >&2
    return 1
  }
  # on disk the guest's root-owned files stay uid 0 (no chown); through the mount,
  # from the host, they are the guest's mapped root
  expect "owner of c1's /etc on disk" \
    "$(stat -c %u "$KANTE_DIR/storage-pools/default/containers/c1/rootfs/etc")" 0
  expect "owner of c1's /etc in its mount" "$(stat -c %u "/proc/$pid/root/etc")" \
    "$(awk '$1 == 0 {print $2}' "/proc/$pid/uid_map")"
  echo "c1's root attached from the host side: idmapped ($opts), files unshifted on disk"
}

s_macvlan_vlan() {
  local peer=${TAG}p
  ip link add "${TAG}a" type veth peer name "${TAG}b"
  ip netns add "$peer"
  ip link set "${TAG}b" netns "$peer"
  ip link set "${TAG}a" up
  if ! ip -n "$peer" link add link "${TAG}b" name "${TAG}b.10" type vlan id 10 2>"$STEPLOG.e"; then
    echo "NO: no 802.1Q VLANs on this kernel ($(tail -n1 "$STEPLOG.e"); 8021q: $(modinfo -n 8021q 2>&1 | tail -n1))"
    return 0
  fi
  ip -n "$peer" addr add 192.0.2.1/24 dev "${TAG}b.10"
  ip -n "$peer" link set "${TAG}b" up
  ip -n "$peer" link set "${TAG}b.10" up
  K launch busybox mv1
  K config device add mv1 vl nic nictype=macvlan "parent=${TAG}a" vlan=10 name=eth9
  kx mv1 'ip addr add 192.0.2.2/24 dev eth9 && ip link set eth9 up && ping -c2 -W3 192.0.2.1'
  local vlan_if left=removed
  vlan_if=$(ip -o link show type vlan | grep -o "${TAG}a\.10" | head -n1)
  K delete -f mv1
  ip link show "${TAG}a.10" >/dev/null 2>&1 && left="left behind"
  echo "macvlan on ${vlan_if:-?} (8021q: $(how_in_kernel 8021q)): guest pings the tagged peer; the VLAN interface Kante made: $left after delete"
}

s_ovs() {
  if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    echo "NO: no ovs-vswitchd running"
    return 0
  fi
  if ! [ -d /sys/module/openvswitch ] && ! modprobe -q openvswitch 2>"$STEPLOG.e"; then
    echo "NO: no Open vSwitch kernel datapath ($(modinfo -n openvswitch 2>&1 | tail -n1))"
    return 0
  fi
  local br=${TAG}o
  # under emulation vswitchd may take more than ovs-vsctl's usual few seconds
  ovs-vsctl --timeout=90 add-br "$br"
  expect datapath "$(ovs-vsctl get bridge "$br" datapath_type | tr -d '"')" ""
  ovs-dpctl show | grep -q "system@ovs-system"
  ip addr add 198.51.100.1/24 dev "$br" && ip link set "$br" up
  K launch busybox ov1
  K config device add ov1 o nic nictype=bridged "parent=$br" name=eth8
  kx ov1 'ip addr add 198.51.100.2/24 dev eth8 && ip link set eth8 up && ping -c2 -W3 198.51.100.1'
  K delete -f ov1
  ovs-vsctl --timeout=90 del-br "$br"
  echo "OVS bridge on the kernel datapath (system@ovs-system; openvswitch: $(how_in_kernel openvswitch)): guest NIC pings through it"
}

s_wireguard() {
  local a=${TAG}w1 b=${TAG}w2
  ip netns add "$a" && ip netns add "$b"
  if ! ip -n "$a" link add wg0 type wireguard 2>"$STEPLOG.e"; then
    echo "NO: no WireGuard on this kernel ($(tail -n1 "$STEPLOG.e"); wireguard: $(modinfo -n wireguard 2>&1 | tail -n1))"
    return 0
  fi
  ip -n "$b" link add wg0 type wireguard
  ip link add "${TAG}x" netns "$a" type veth peer name "${TAG}y" netns "$b"
  ip -n "$a" addr add 203.0.113.1/30 dev "${TAG}x" && ip -n "$a" link set "${TAG}x" up
  ip -n "$b" addr add 203.0.113.2/30 dev "${TAG}y" && ip -n "$b" link set "${TAG}y" up
  local ka kb
  ka=$(wg genkey) && kb=$(wg genkey)
  ip netns exec "$a" wg set wg0 listen-port 51820 private-key <(echo "$ka") \
    peer "$(echo "$kb" | wg pubkey)" allowed-ips 10.99.0.2/32 endpoint 203.0.113.2:51820
  ip netns exec "$b" wg set wg0 listen-port 51820 private-key <(echo "$kb") \
    peer "$(echo "$ka" | wg pubkey)" allowed-ips 10.99.0.1/32 endpoint 203.0.113.1:51820
  ip -n "$a" addr add 10.99.0.1/24 dev wg0 && ip -n "$a" link set wg0 up
  ip -n "$b" addr add 10.99.0.2/24 dev wg0 && ip -n "$b" link set wg0 up
  ip netns exec "$a" ping -c2 -W3 10.99.0.2
  local hs
  hs=$(ip netns exec "$a" wg show wg0 latest-handshakes | awk '{print $2}')
  [ "${hs:-0}" -gt 0 ]
  echo "kernel WireGuard (wireguard: $(how_in_kernel wireguard)) between two namespaces: handshake, ping through the tunnel"
}

s_criu() {
  local chk refused
  if ! command -v criu >/dev/null; then
    echo "NO: criu is not installed"
    return 0
  fi
  chk=$(criu check 2>&1 | tail -n1 || true)
  # CRIU itself: a process tree dumped, then restored, goes on counting
  local d c1 c2 p
  d=$(mktemp -d)
  setsid sh -c "i=0; while :; do i=\$((i+1)); echo \$i > $d/n; sleep 0.2; done" \
    </dev/null >/dev/null 2>&1 &
  p=$!
  sleep 1
  if criu dump -t "$p" -D "$d" -o dump.log && c1=$(cat "$d/n") && sleep 1 &&
    [ "$(cat "$d/n")" = "$c1" ] && criu restore -D "$d" -d -o restore.log && sleep 1.5 &&
    c2=$(cat "$d/n") && [ "$c2" -gt "$c1" ]; then
    chk="$chk; dump and restore of a process tree work ($c1 -> $c2)"
  else
    chk="$chk; dump/restore failed: $(tail -n1 "$d"/*.log 2>/dev/null | tail -n1)"
  fi
  kill -9 -- "-$p" 2>/dev/null || true # its process group (restored with its ids)
  rm -rf "$d"
  refused=$(K snapshot c1 live --stateful 2>&1 || true)
  K info c1 | grep -q '^ *live' && {
    echo "a stateful snapshot was taken" >&2
    return 1
  }
  echo "NO: Kante has no stateful snapshots ('$(echo "$refused" | tail -n1)'); CRIU itself: criu check '$chk'"
}

s_reboot() {
  # the host went down with c1 and b1 running: kanted.service (enabled) started them again
  api_up
  systemctl is-active kanted
  K list -c ns -f csv | grep -qx 'c1,RUNNING'
  K list -c ns -f csv | grep -qx 'b1,RUNNING'
  wait_running c1 >/dev/null
  expect "c1 memory after the reboot" "$(cgval c1 memory memory.max memory.limit_in_bytes)" 268435456
  # how the guest's previous boot ended: its own journal (persistent in Debian 12)
  local last
  last=$(K exec c1 -- journalctl -b -1 -q -n 200 --no-pager -o cat 2>/dev/null |
    grep -E -c "Reached target (System Power Off|System Halt|Power-Off|Halt)|Shutting down" || true)
  echo "rebooted in ${KANTE_CONF_REBOOT_SECS:-?} s: c1 and b1 autostarted, systemd running, limits kept; c1's previous boot $([ "${last:-0}" -gt 0 ] && echo "shut down cleanly" || echo "ended without a clean shutdown (killed with the host)")"
}

s_delete() {
  local pre others
  pre=$(cgdir c1 memory | xargs dirname)
  K delete -f c1 b1
  # what a failed step left (that step is marked already)
  others=$(K list -c n -f csv | tr '\n' ' ')
  # shellcheck disable=SC2086
  [ -z "$others" ] || K delete -f $others
  [ -z "$(K list -c n -f csv)" ] || {
    echo "instances left: $(K list -c n -f csv)" >&2
    return 1
  }
  local left
  left=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path "*/$(basename "$pre")/*" 2>/dev/null || true)
  [ -z "$left" ] || {
    echo "cgroups left: $left" >&2
    return 1
  }
  if grep -q " $KANTE_DIR/storage-pools/[^ ]*/containers" /proc/self/mountinfo; then
    echo "mounts left" >&2
    return 1
  fi
  echo "all instances deleted: no cgroup under $(basename "$pre"), no mount left"
}

cleanup() {
  ip link del "${TAG}a" 2>/dev/null
  for ns in "${TAG}p" "${TAG}w1" "${TAG}w2"; do ip netns del "$ns" 2>/dev/null; done
  ovs-vsctl --timeout=5 --if-exists del-br "${TAG}o" 2>/dev/null
  if [ "$MODE" = host ]; then
    for i in $(K list -c n -f csv 2>/dev/null); do K delete -f "$i" >/dev/null 2>&1; done
    K storage delete fast >/dev/null 2>&1
    host_stop TERM
    if [[ "$KANTE_DIR" == /var/tmp/kante-conformance.* ]]; then
      rm -rf "$KANTE_DIR"
      rm -f "$KANTE_DIR.log"
    fi
  fi
  rm -f "$STEPLOG" "$STEPLOG.e" "$PIDFILE"
}
trap cleanup EXIT

if [ "$PHASE" = after-reboot ]; then
  step host-reboot s_reboot always
  step delete s_delete always
  exit $FAILED
fi
if [ "$MODE" = vm ]; then
  step readme s_readme always
else
  printf 'ROW|readme|n/a|0.0|a shared host: demo.sh would install into /usr/local/bin and /var/lib/kante\n'
fi
step images s_images always
step launch s_launch always
step limits s_limits
step lxcfs s_lxcfs
step exec s_exec
step files s_files
step stop-start s_stop_start
step daemon-restart s_restart
step daemon-kill9 s_kill9
step btrfs s_btrfs
step nesting s_nesting
step devices s_devices
step idmap-rootfs s_idmap
step macvlan-vlan s_macvlan_vlan
step ovs-kernel s_ovs
step wireguard s_wireguard
step criu s_criu
if [ "$PHASE" = before-reboot ]; then exit $FAILED; fi
[ "$MODE" = host ] && printf 'ROW|host-reboot|n/a|0.0|a shared host is not rebooted\n'
step delete s_delete always
exit $FAILED
