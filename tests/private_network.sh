#!/bin/sh
# Runs a command in a private network namespace that has only the loopback
# interface (`unshare -rn`, lo up), where the machine allows it, so that the
# TFF workers the tests start are reachable from this machine only; elsewhere
# runs it as it is.
if unshare -rn true 2>/dev/null && command -v ip >/dev/null 2>&1; then
  exec unshare -rn sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "private_network.sh: no private network namespace here; running without one." >&2
exec "$@"
