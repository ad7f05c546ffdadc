#!/bin/sh
# Runs once inside the freshly debootstrapped Debian (chroot, as root), before
# the folder is tarred and imported as runtime-host/rootfs. It owns what is in
# the base's file system: Lambda's user, the Lambda directories, apt sources
# and the slimming. Image config (ENV, WORKDIR) belongs in ./Dockerfile, not
# here. Must not need /proc, the network or any package beyond minbase.
set -eu

# Lambda runs functions as sbx_user1051 (uid 993, gid 990). The host picks
# the user per container, so the image only has to know the name.
groupadd --gid 990 sbx_user1051
useradd --uid 993 --gid 990 --no-create-home --home-dir /home/sbx_user1051 \
        --shell /sbin/nologin sbx_user1051

# /var/task: function code, /var/runtime: runtime client, /opt: layers.
# Owned by root, readable by all, as in Lambda.
mkdir -p /var/task /var/runtime /opt
chmod 0755 /var/task /var/runtime /opt

# Language images install packages later: give them point-release and
# security updates, and no recommends (Dockerfiles say so too; this is a net).
cat >/etc/apt/sources.list <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
cat >/etc/apt/apt.conf.d/90runtime-host <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT

# Docs, man pages and translations are dead weight in a sandbox; keep the
# copyright files. dpkg applies this to every later install too.
cat >/etc/dpkg/dpkg.cfg.d/90runtime-host-slim <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian/*

# Caches, logs and debootstrap's copies of this machine's network files:
# Docker supplies hostname, hosts and resolv.conf to every container.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
       /var/cache/debconf/*-old /var/lib/dpkg/*-old /tmp/* /root/.bash_history
find /var/log -type f -delete
rm -f /etc/hostname
: >/etc/resolv.conf
