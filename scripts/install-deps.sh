#!/usr/bin/env bash
# Installs what Suture needs to build, test and run its demo on Debian 12.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang
  libelf-dev libdw-dev libunwind-dev libzydis-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 util-linux
  redis-server redis-tools ccache memcached python3-matplotlib quilt patch dpkg-dev
  libevent-dev libsasl2-dev
  tcl  # Redis's own test suite (runtest), run by the e2e tests
)

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

# Source packages (apt-get source) for the end-to-end tests on real servers:
# add deb-src next to every deb entry of Debian's archive, once.
sources=/etc/apt/sources.list.d/debian.sources
need_update=0
if [ -f "$sources" ] && grep -q '^Types: deb$' "$sources"; then
  $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' "$sources"
  need_update=1
fi
if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && ! grep -q '^deb-src ' /etc/apt/sources.list; then
  grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $SUDO tee -a /etc/apt/sources.list >/dev/null
  need_update=1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ $need_update -eq 0 ] || $SUDO apt-get update -qq
  exit 0
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
