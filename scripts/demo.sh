#!/usr/bin/env bash
# README command 1: set up a fresh Debian 12 host, build Kante, start kanted
# (embedded default: SQLite state, dir pool), build a Debian image and launch c1.
# KANTE_BIN_DIR=dir: install the kanted and kante built there instead of building
# (scripts/debian-vm.sh does so in its emulated Debian 12, where compiling is too slow).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ -n "${KANTE_BIN_DIR:-}" ]; then
  echo ">> installing the built kanted and kante from $KANTE_BIN_DIR"
else
  echo ">> building"
  cargo build --release --locked -p kanted -p kante
  KANTE_BIN_DIR=target/release
fi
install -m 0755 "$KANTE_BIN_DIR/kanted" "$KANTE_BIN_DIR/kante" /usr/local/bin/

export KANTE_DIR=${KANTE_DIR:-/var/lib/kante}
if ! kante list >/dev/null 2>&1; then
  if [ "$(cat /proc/1/comm)" = systemd ]; then
    install -m 0644 packaging/kanted.service /etc/systemd/system/kanted.service
    systemctl daemon-reload
    systemctl enable --now kanted
  else
    echo ">> starting kanted in the background (log: /var/log/kanted.log)"
    nohup /usr/local/bin/kanted >>/var/log/kanted.log 2>&1 &
  fi
  for _ in $(seq 50); do kante list >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo ">> default network (kante init --auto: a NAT bridge on a free subnet, eth0 of the default profile)"
kante init --auto

echo ">> building the Debian image (cached after the first run)"
kante image build debian/12 --alias debian/12
if ! kante info c1 >/dev/null 2>&1; then
  kante launch debian/12 c1 --wait
fi
kante list
