#!/usr/bin/env bash
# Installs what Kante needs on a Debian 12 host (idempotent): Debian packages
# and, if missing, a Rust toolchain (not when KANTE_BIN_DIR names built binaries).
# Run as root. `scripts/deps.sh --list` prints the Debian packages and exits.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config libseccomp-dev   # building (libseccomp for the seccomp policy)
  debootstrap busybox-static                  # image builds
  squashfs-tools zstd xz-utils bzip2 tar      # image formats
  iproute2 procps util-linux curl ca-certificates
  dnsmasq-base nftables openvswitch-switch iputils-ping  # networks: DHCP/DNS, NAT, OVS (userspace datapath)
  wireguard-go wireguard-tools                # encrypted overlays (security.encryption=wireguard): userspace WireGuard, wg genkey/pubkey/show
  tcpdump iperf3                              # tests: uplink captures of encrypted overlays; kante-bench's overlay throughput
  btrfs-progs                                 # btrfs storage pools (mkfs.btrfs, quotas)
  rsync                                       # copy --refresh (incremental sync of a volume)
  lxcfs fuse3                                 # guests see their limits in /proc (free, nproc, uptime)
  attr                                        # tests: getfattr reads xattrs set inside guests
  lxd-client                                  # tests: Debian's lxc client against kanted
  python3-pylxd                               # tests: Debian's pylxd against kanted (run with /usr/bin/python3)
  python3-prometheus-client                   # tests: its OpenMetrics parser reads /1.0/metrics
  python3-venv                                # tests: the venv Ansible is installed into (below)
  protobuf-compiler libprotobuf-dev           # building kante-cluster (etcd-client compiles etcd's .proto files)
  etcd-server                                 # cluster state: etcd 3.4 (kante-cluster's tests start their own)
  lxd                                         # tests/lxd_interop.rs: moves to and from a real LXD 5.0.2 (it starts its own)
  chromium fonts-dejavu-core                  # tests: the web view in headless Chromium (tests/ui.rs)
)

if [[ "${BASH_SOURCE[0]}" == "$0" && "${1:-}" == --list ]]; then
  echo "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's etcd-server enables a system etcd on the default ports; Kante
# and its tests start their own, so keep that one stopped.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled etcd >/dev/null 2>&1; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
# Debian's lxd likewise: the interop test starts an LXD of its own
# (own LXD_DIR), and kante-bench --install-lxd starts the system one.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled lxd.socket >/dev/null 2>&1; then
  systemctl disable --now lxd.socket lxd.service >/dev/null 2>&1 || true
fi

# Ansible from PyPI (the `ansible` package bundles community.general:
# lxd_container, lxd_profile and the lxd connection plugin) for
# tests/compat_ansible.rs, in its own venv beside Debian's python. About
# 570 MB and 15-60 s the first time; a second run only reads the version.
# Pinned: 11.13.0 brings ansible-core 2.18 (runs on Debian 12's Python 3.11)
# and community.general 10.7.
ANSIBLE_VERSION=11.13.0
ANSIBLE_VENV=/opt/kante-ansible
if ! "$ANSIBLE_VENV/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('ansible') != '$ANSIBLE_VERSION')" 2>/dev/null; then
  echo ">> pip install ansible==$ANSIBLE_VERSION into $ANSIBLE_VENV"
  /usr/bin/python3 -m venv "$ANSIBLE_VENV"
  "$ANSIBLE_VENV/bin/pip" install -q --disable-pip-version-check "ansible==$ANSIBLE_VERSION"
fi

# schemathesis from PyPI for tests/openapi.rs: it drives a live kanted
# from docs/openapi.json (docs/openapi.md). Its own venv, like Ansible's;
# pinned so a new release cannot change what a green run means.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/kante-schemathesis
if ! "$SCHEMATHESIS_VENV/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  echo ">> pip install schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  /usr/bin/python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The web view's browser test (tests/ui.rs) runs tests/ui/run.mjs with
# playwright-core and axe-core from the npm registry, pinned by
# tests/ui/package-lock.json; it needs Node.js 20 or later (the machine's,
# else Debian's nodejs and npm).
if ! command -v npm >/dev/null 2>&1; then
  echo ">> apt-get install nodejs npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
KANTE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$KANTE_SRC/tests/ui/node_modules/.package-lock.json" ] \
  || [ "$KANTE_SRC/tests/ui/package-lock.json" -nt "$KANTE_SRC/tests/ui/node_modules/.package-lock.json" ]; then
  echo ">> npm ci in tests/ui"
  (cd "$KANTE_SRC/tests/ui" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Kernel modules the tests and pools use, where the kernel has them as
# modules (Debian's does; a kernel with them built in needs nothing).
if command -v modprobe >/dev/null 2>&1; then
  for m in btrfs; do
    grep -qw "$m" /proc/filesystems 2>/dev/null || modprobe "$m" 2>/dev/null || true
  done
fi

if [ -z "${KANTE_BIN_DIR:-}" ] && ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo ">> installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
