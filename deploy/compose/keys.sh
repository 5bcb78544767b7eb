#!/bin/sh
# Makes the SFTP server's host key, kafkasync's client key and a known_hosts pinning the host key,
# once; later runs keep them.
set -eu
cd /keys
[ -f host_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f host_ed25519
[ -f client_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f client_ed25519
cp client_ed25519.pub authorized_keys
echo "sftp $(cat host_ed25519.pub)" > known_hosts
chmod 0644 authorized_keys known_hosts client_ed25519.pub host_ed25519.pub
chmod 0640 client_ed25519 && chown 0:65532 client_ed25519   # readable by kafkasync's nonroot group
