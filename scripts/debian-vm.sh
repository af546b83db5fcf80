#!/usr/bin/env bash
# A stock Debian 12 host on demand, under qemu's software emulation (TCG):
#   up           build (cached) and boot the VM, install this tree's Debian package
#                (scripts/deb.sh: kanted, kante, the unit, completion, man pages) and start kanted
#   conformance  a fresh VM, scripts/conformance.sh inside (its first step is README's
#                command 1), its rows printed, down; exits non-zero on any failed step
#                (KANTE_VM_KEEP=1 leaves the VM up)
#   smoke        conformance with only README's command 1, launch, limits, lxcfs, exec and
#                delete (scripts/test.sh runs it when KANTE_CI_DEBIAN_VM=1)
#   matrix       the scenario on this host's kernel and in the VM: rewrites the matrix
#                in docs/debian-vm.md
#   test NAME..  integration tests (tests/NAME.rs) built here, run in the VM (up if not)
#   install      copy a fresh build into the running VM again (and restart kanted)
#   ssh [cmd]    a shell (or a command) in the running VM
#   down         stop the VM and remove everything `up` made (the caches stay)
# Caches (kept between runs, safe to delete): /var/cache/kante/debian-vm/ (the Debian
# root image, its kernel and initrd, qemu from Debian's packages when the host has none).
# KANTE_VM_NAME (default deb12) names a VM: several may run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

CACHE=${KANTE_VM_CACHE:-/var/cache/kante/debian-vm}
NAME=${KANTE_VM_NAME:-deb12}
STATE=/var/tmp/kante-debian-vm/$NAME
MIRROR=${KANTE_VM_MIRROR:-http://deb.debian.org/debian}
VCPUS=${KANTE_VM_CPUS:-2}
MEM=${KANTE_VM_MEM:-3072}
RECIPE_VERSION=1

# What the VM's root holds beyond debootstrap's minbase: systemd as PID 1, Debian's
# kernel and its modules, a way in, every package scripts/deps.sh installs, and the
# tools of the rows the host kernel cannot show (8021q, openvswitch, wireguard, criu).
vm_packages() {
  echo systemd-sysv udev dbus kmod linux-image-amd64 openssh-server less e2fsprogs
  echo wireguard-tools criu
  scripts/deps.sh --list
}

log() { echo ">> $*" >&2; }

# ---- qemu -------------------------------------------------------------------------

# Debian's qemu-system-x86: installed if the host can take it, else (when the host holds a
# newer qemu-utils that Debian's qemu-system-common breaks) unpacked into the cache.
QEMU=""
QEMU_DATA=""
find_qemu() {
  if command -v qemu-system-x86_64 >/dev/null; then
    QEMU=$(command -v qemu-system-x86_64)
    return
  fi
  local q=$CACHE/qemu
  if [ ! -x "$q/usr/bin/qemu-system-x86_64" ]; then
    log "qemu-system-x86 from Debian"
    # --no-remove: never at the cost of a package the host has (say, a newer qemu-utils)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      --no-remove qemu-system-x86 >&2; then
      log "the host's packages conflict with qemu-system-x86: unpacking it into $q"
      local v
      v=$(apt-cache show qemu-system-x86 | awk '/^Version:/{print $2; exit}')
      mkdir -p "$CACHE/debs" && rm -rf "$q.new" && mkdir -p "$q.new"
      (cd "$CACHE/debs" && apt-get download "qemu-system-x86=$v" "qemu-system-common=$v" qemu-system-data seabios ipxe-qemu >&2)
      for d in "$CACHE"/debs/*.deb; do dpkg -x "$d" "$q.new"; done
      # the shared libraries Debian's package depends on, those missing only (nothing
      # the host has is upgraded or removed)
      local libs=() l
      for l in $(apt-cache depends "qemu-system-x86=$v" | awk '/Depends: lib/{print $2}' | sort -u); do
        dpkg-query -W -f='${Status}' "$l" 2>/dev/null | grep -q "install ok installed" || libs+=("$l")
      done
      if [ ${#libs[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-remove \
          --no-upgrade "${libs[@]}" >&2
      fi
      rm -rf "$q" && mv "$q.new" "$q"
    fi
  fi
  if command -v qemu-system-x86_64 >/dev/null; then
    QEMU=$(command -v qemu-system-x86_64)
  else
    QEMU=$q/usr/bin/qemu-system-x86_64
    QEMU_DATA=$q/usr/share/qemu
    export QEMU_MODULE_DIR=$q/usr/lib/x86_64-linux-gnu/qemu # its accelerator modules
  fi
}

# ---- the Debian root image ---------------------------------------------------------

image_stamp() {
  { echo "recipe $RECIPE_VERSION $MIRROR"; vm_packages | tr ' ' '\n' | sort; } | sha256sum | cut -c1-16
}

chroot_umount() {
  local r=$1 m
  for m in "$r/dev/pts" "$r/dev" "$r/sys" "$r/proc"; do
    mountpoint -q "$m" && umount -l "$m"
  done
  return 0
}

# Builds $CACHE/base.img (ext4), vmlinuz and initrd.img, unless the stamp matches.
build_image() {
  local stamp
  stamp=$(image_stamp)
  if [ -f "$CACHE/base.img" ] && [ "$(cat "$CACHE/base.stamp" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap
  mkdir -p "$CACHE"
  local r=$CACHE/rootfs.build
  chroot_umount "$r"
  rm -rf "$r" "$CACHE/base.img" "$CACHE/base.stamp"
  log "debootstrap bookworm into $r"
  mkdir -p "$CACHE/debootstrap-debs"
  debootstrap --variant=minbase --include=apt,ca-certificates \
    --cache-dir="$CACHE/debootstrap-debs" bookworm "$r" "$MIRROR" >&2
  trap 'chroot_umount '"$r" EXIT
  mount -t proc proc "$r/proc"
  mount -t sysfs sys "$r/sys"
  mount --bind /dev "$r/dev"
  mount --bind /dev/pts "$r/dev/pts"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  echo "deb $MIRROR bookworm main" >"$r/etc/apt/sources.list"
  # no service starts inside the chroot
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" && chmod 0755 "$r/usr/sbin/policy-rc.d"
  log "apt-get install (the VM's packages)"
  # shellcheck disable=SC2046
  chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  # shellcheck disable=SC2046
  chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    $(vm_packages) >&2
  chroot "$r" apt-get clean
  rm -f "$r/usr/sbin/policy-rc.d"
  chroot_umount "$r"
  trap - EXIT
  # the host's identity and resolver stay out; systemd gives the VM its own
  : >"$r/etc/machine-id"
  echo kante-vm >"$r/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 kante-vm\n' >"$r/etc/hosts"
  rm -f "$r/etc/resolv.conf"
  echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$r/etc/fstab"
  cat >"$r/etc/systemd/network/10-uplink.network" <<'EOF'
# qemu's user-mode network (restricted: the host's loopback only, for ssh)
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
EOF
  ln -sf /lib/systemd/system/systemd-networkd.service \
    "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
  # the way in: root by key only
  mkdir -p "$r/root/.ssh" && chmod 0700 "$r/root/.ssh"
  [ -f "$CACHE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C kante-debian-vm -f "$CACHE/id_ed25519"
  cp "$CACHE/id_ed25519.pub" "$r/root/.ssh/authorized_keys"
  cp "$r"/boot/vmlinuz-* "$CACHE/vmlinuz"
  cp "$r"/boot/initrd.img-* "$CACHE/initrd.img"
  log "ext4 image from the root"
  rm -f "$CACHE/base.img.new"
  mkfs.ext4 -q -L kante-vm -d "$r" "$CACHE/base.img.new" 12G
  mv "$CACHE/base.img.new" "$CACHE/base.img"
  rm -rf "$r"
  echo "$stamp" >"$CACHE/base.stamp"
}

# ---- the VM -----------------------------------------------------------------------

SSH_OPTS=(-i "$CACHE/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=8)
vm_ssh() { ssh "${SSH_OPTS[@]}" -p "$(cat "$STATE/port")" root@127.0.0.1 "$@"; }
vm_scp() { scp -q "${SSH_OPTS[@]}" -P "$(cat "$STATE/port")" "$@"; }
running() { [ -f "$STATE/qemu.pid" ] && kill -0 "$(cat "$STATE/qemu.pid")" 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 10000))
    ss -Hltn "sport = :$p" | grep -q . || {
      echo "$p"
      return
    }
  done
  echo "no free port" >&2
  return 1
}

# Boots the VM: a copy-on-write disk over the cached image; the network is qemu's user
# mode, restricted (no way out), with one forward from a loopback port to the VM's ssh.
boot() {
  mkdir -p "$STATE"
  qemu-img create -q -f qcow2 -F raw -b "$CACHE/base.img" "$STATE/disk.qcow2"
  free_port >"$STATE/port"
  local data=()
  [ -n "$QEMU_DATA" ] && data=(-L "$QEMU_DATA" -L "$CACHE/qemu/usr/share/seabios")
  # One host thread for all vCPUs (thread=single): the VM never takes more than one core.
  nice -n 10 "$QEMU" "${data[@]}" -name "kante-$NAME" -machine q35 \
    -accel tcg,thread=single -cpu max -smp "$VCPUS" -m "$MEM" \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0" \
    -drive "file=$STATE/disk.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$(cat "$STATE/port")-:22" \
    -device virtio-net-pci,netdev=n0,romfile= -device virtio-rng-pci \
    -display none -monitor none -serial "file:$STATE/serial.log" \
    -daemonize -pidfile "$STATE/qemu.pid"
  local t0=$SECONDS
  until vm_ssh true 2>/dev/null; do
    if ! running || [ $((SECONDS - t0)) -gt 600 ]; then
      tail -n 30 "$STATE/serial.log" >&2
      echo "the VM did not come up" >&2
      return 1
    fi
    sleep 2
  done
  echo $((SECONDS - t0)) >"$STATE/boot-seconds"
  log "VM $NAME up in $((SECONDS - t0)) s: $(vm_ssh uname -r), ssh -p $(cat "$STATE/port") root@127.0.0.1"
}

# Copies this tree's release binaries, scripts and unit and the cached test images in.
# With KANTE_VM_STOCK=1 nothing is installed: the first step of the scenario is a new
# user's README command 1; else kanted is installed and started as a systemd service.
install_kante() {
  log "cargo build --release (kanted, kante) and the Debian package (scripts/deb.sh)"
  local deb
  deb=$("$ROOT/scripts/deb.sh")
  vm_ssh 'mkdir -p /root/kante/bin /var/cache/kante/images'
  tar -C "$ROOT" -cf - scripts packaging README.md |
    vm_ssh 'tar -C /root/kante -xf -'
  # without their debug info (a tenth of the size to copy)
  mkdir -p "$STATE/bin"
  objcopy --strip-debug target/release/kanted "$STATE/bin/kanted"
  objcopy --strip-debug target/release/kante "$STATE/bin/kante"
  vm_scp "$STATE/bin/kanted" "$STATE/bin/kante" root@127.0.0.1:/root/kante/bin/
  local imgs=(/var/cache/kante/images/busybox-amd64.tar.zst* /var/cache/kante/images/debian-bookworm-amd64.tar.zst*)
  vm_scp "${imgs[@]}" root@127.0.0.1:/var/cache/kante/images/
  if [ "${KANTE_VM_STOCK:-0}" != 1 ]; then
    # The package, as a user installs it: apt resolves its Depends from the
    # VM's packages; then the unit, completion and man pages are where
    # Debian looks for them.
    vm_scp "$deb" root@127.0.0.1:/root/kante/
    vm_ssh "apt-get install -y -q /root/kante/$(basename "$deb") >/dev/null &&
      systemctl enable --now kanted &&
      test -f /usr/share/bash-completion/completions/kante &&
      test -f /usr/share/man/man1/kante-launch.1.gz &&
      systemctl is-active kanted"
  fi
}

cmd_up() {
  if running; then
    log "VM $NAME is already up (ssh -p $(cat "$STATE/port"))"
    return
  fi
  rm -rf "$STATE"
  find_qemu
  build_image
  boot
  install_kante
}

cmd_down() {
  if running; then
    local pid
    pid=$(cat "$STATE/qemu.pid")
    vm_ssh 'systemctl poweroff' >/dev/null 2>&1 || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill "$pid"
  fi
  rm -rf "$STATE"
  rmdir /var/tmp/kante-debian-vm 2>/dev/null || true
  log "VM $NAME removed (caches kept in $CACHE)"
}

# Runs the scenario in the VM; prints its rows and returns its status.
scenario_in_vm() { # [PHASE [REBOOT_SECS]]
  vm_ssh "cd /root/kante && KANTE_CONF_MODE=vm KANTE_CONF_ONLY='${KANTE_CONF_ONLY:-}' \
    KANTE_CONF_PHASE='${1:-all}' KANTE_CONF_REBOOT_SECS='${2:-}' ./scripts/conformance.sh"
}

# Reboots the VM (systemctl reboot) and waits for it; prints the seconds it took.
reboot_vm() {
  local before t0=$SECONDS
  before=$(vm_ssh cat /proc/sys/kernel/random/boot_id)
  # queued, not waited for: a session open across the shutdown would hang until
  # ssh's keep-alive gives up
  vm_ssh 'systemctl --no-block reboot' >/dev/null 2>&1 || true
  sleep 5
  until [ "$(timeout 20 ssh "${SSH_OPTS[@]}" -p "$(cat "$STATE/port")" root@127.0.0.1 \
    cat /proc/sys/kernel/random/boot_id 2>/dev/null)" != "$before" ] &&
    vm_ssh 'systemctl is-system-running --wait' 2>/dev/null | grep -qE '^(running|degraded)$'; do
    if ! running || [ $((SECONDS - t0)) -gt 600 ]; then
      echo "the VM did not come back" >&2
      return 1
    fi
    sleep 3
  done
  echo $((SECONDS - t0))
}

cmd_conformance() {
  local t0=$SECONDS rc=0
  [ "${KANTE_VM_KEEP:-0}" = 1 ] || trap cmd_down EXIT
  running && cmd_down
  KANTE_VM_STOCK=1 cmd_up
  local up=$((SECONDS - t0))
  if [ -n "${KANTE_CONF_ONLY:-}" ]; then
    scenario_in_vm | tee "$CACHE/last-conformance.rows" || rc=$?
  else
    # everything, then a reboot of the host with instances running, then the delete
    scenario_in_vm before-reboot | tee "$CACHE/last-conformance.rows" || rc=$?
    local secs
    secs=$(reboot_vm) || rc=1
    scenario_in_vm after-reboot "$secs" | tee -a "$CACHE/last-conformance.rows" || rc=$?
  fi
  echo "ROW|total|$([ $rc = 0 ] && echo pass || echo FAIL)|$((SECONDS - t0))|VM up (boot $(cat "$STATE/boot-seconds") s, build and install) in $up s; kernel $(vm_ssh uname -r)"
  return $rc
}

# Builds the named integration tests here, copies them in (without debug info) and runs
# them in the VM one at a time against the release kanted and kante of /root/kante/bin.
cmd_test() {
  [ $# -gt 0 ] || {
    echo "usage: $0 test NAME..." >&2
    return 2
  }
  running || cmd_up
  local args=() n exe rc=0
  for n in "$@"; do args+=(--test "$n"); done
  cargo build --release --locked -p kanted -p kante >&2
  cargo test --no-run --locked -p kante-integration "${args[@]}" --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' >"$STATE/tests.list"
  vm_ssh 'mkdir -p /root/kante/tests'
  # sources the tests read at run time, where they were built (CARGO_MANIFEST_DIR)
  tar -C "$ROOT" -cf - tests/attacks tests/compat | vm_ssh "mkdir -p '$ROOT' && tar -C '$ROOT' -xf -"
  mkdir -p "$STATE/bin"
  while read -r n exe; do
    objcopy --strip-debug "$exe" "$STATE/bin/$n"
    vm_scp "$STATE/bin/$n" root@127.0.0.1:/root/kante/tests/
  done <"$STATE/tests.list"
  for n in "$@"; do
    log "tests/$n.rs in the VM"
    vm_ssh "cd /root/kante && KANTE_TEST_BIN_DIR=/root/kante/bin ./tests/$n --test-threads=1 ${KANTE_VM_TEST_ARGS:-}" || rc=1
  done
  return $rc
}

# The scenario here (a private kanted, under the tests' host-wide lock) and in a fresh VM;
# their rows side by side replace the matrix in docs/debian-vm.md.
cmd_matrix() {
  local host_rows vm_rows
  find_qemu
  cargo build --release --locked -p kanted -p kante >&2
  log "the scenario on this host ($(uname -r))"
  local t0=$SECONDS
  host_rows=$(flock /run/kante-tests.lock env KANTE_CONF_MODE=host scripts/conformance.sh) || true
  host_rows+=$'\n'"ROW|total|$(grep -q '^ROW|[^|]*|FAIL' <<<"$host_rows" && echo FAIL || echo pass)|$((SECONDS - t0))|the scenario with a private kanted (no VM)"
  log "the scenario in a stock Debian 12 under emulation"
  vm_rows=$(cmd_conformance) || true
  HOST_ROWS=$host_rows VM_ROWS=$vm_rows HOST_KERNEL=$(uname -r) QEMU_VERSION=$("$QEMU" --version | head -n1) \
    python3 scripts/matrix.py docs/debian-vm.md
  log "docs/debian-vm.md updated"
}

case "${1:-}" in
  up) cmd_up ;;
  test)
    shift
    cmd_test "$@"
    ;;
  matrix) cmd_matrix ;;
  install) install_kante ;; # again, into the running VM (after a rebuild)
  down) cmd_down ;;
  conformance) cmd_conformance ;;
  smoke) KANTE_CONF_ONLY="limits lxcfs exec" cmd_conformance ;;
  ssh)
    shift
    vm_ssh "$@"
    ;;
  image)
    find_qemu
    build_image
    ;;
  --list-packages) vm_packages ;;
  *)
    sed -n '2,/^set /p' "$0" | grep '^#' >&2
    exit 2
    ;;
esac
