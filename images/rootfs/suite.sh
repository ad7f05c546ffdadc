#!/bin/sh
# Runs after images/base/setup.sh in a root file system of a Debian suite other than
# bookworm (argument: the suite, e.g. trixie), inside the chroot as root. It
# owns only what differs by suite: apt's sources. setup.sh stays bookworm's
# word for word so that the bookworm rootfs keeps its hash and its cache.
# Must not need /proc, the network or any package beyond minbase.
set -eu
suite="$1"
cat >/etc/apt/sources.list <<SOURCES
deb http://deb.debian.org/debian ${suite} main
deb http://deb.debian.org/debian ${suite}-updates main
deb http://deb.debian.org/debian-security ${suite}-security main
SOURCES
# debootstrap of a newer suite may also leave the deb822 form; one list only.
rm -f /etc/apt/sources.list.d/debian.sources
rm -rf /var/lib/apt/lists/*
