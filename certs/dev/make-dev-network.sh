#!/usr/bin/env bash
# Make the development network's PKI in certs/dev/network/: a CA, one key and certificate per
# node, and an empty CRL. Development only: these keys must never protect real traffic.
#
# Usage: certs/dev/make-dev-network.sh            (network see-arn, nodes AL-ARO,RS-PPO,MD-ARO,KZ-ARC)
#        NETWORK=pcoc NODES=AL-PPO,RS-PPO certs/dev/make-dev-network.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exchange="${EXCHANGE:-$repo/.venv/bin/exchange}"
if [ ! -x "$exchange" ]; then
    exchange="$(command -v exchange || true)"
fi
if [ -z "$exchange" ]; then
    echo "exchange not found: run .ci/setup first (or set EXCHANGE=/path/to/exchange)" >&2
    exit 2
fi
target="$here/network"
if [ -e "$target/ca.pem" ]; then
    echo "$target already holds a network; delete the folder to make a new one" >&2
    exit 2
fi
"$exchange" pki init "$target" \
    --network "${NETWORK:-see-arn}" \
    --nodes "${NODES:-AL-ARO,RS-PPO,MD-ARO,KZ-ARC}"
echo "verify an envelope:  $exchange envelope verify --ca $target/ca.pem --crl $target/crl.pem --cert $target/AL-ARO.pem < signed.json"
