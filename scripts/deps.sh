#!/bin/sh
# Installs the Debian/Ubuntu packages hgrid's build, demo and tests need
# (make itself included, so this runs on a machine without it), through
# sudo only when not root. The README's first command and .ci/run use it;
# `make deps` runs it too.
set -eu
PACKAGES="build-essential libuv1-dev libprotobuf-c-dev protobuf-c-compiler python3 bc procps
clang libclang-rt-14-dev iproute2 systemd git python3-venv python3-pip pkg-config"
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo=sudo
else
  echo "deps.sh: not root and no sudo: run it as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 ||
  { echo "deps.sh: no apt-get: install these with your package manager: $PACKAGES" >&2; exit 1; }
set -x
$sudo apt-get update
# shellcheck disable=SC2086 # the list splits into packages
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES
