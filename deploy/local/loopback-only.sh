#!/bin/sh
# Run a command inside a loopback-only network namespace when the machine allows it (root, or user
# namespaces). Ray listens on every interface even when told 127.0.0.1; inside such a namespace the
# only interface is loopback, so tests cannot send traffic anywhere else.
if unshare -n true 2>/dev/null && command -v ip >/dev/null 2>&1; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "loopback-only.sh: cannot create a network namespace here (unshare -n refused); running \"$*\" in the host network" >&2
exec "$@"
