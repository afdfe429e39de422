#!/usr/bin/env bash
# `npm run demo`: on a fresh Debian 12 machine as root, installs what the demo needs, builds the
# project, then runs tools/demo/demo.ts (portal, relay, gateway and client in namespaces, real
# traffic through the gateway) and cleans up.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "The demo creates network namespaces and TUN devices: run it as root." >&2
  exit 1
fi

need=()
for tool in ip nft turnserver dnsmasq curl ping; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing Debian packages for: ${need[*]}"
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends iproute2 nftables coturn dnsmasq-base curl iputils-ping >/dev/null
fi

# The Node.js the project requires (24 LTS), from the npm registry where the system's is older.
source scripts/node-runtime.sh

if [ ! -f build/Release/firezone_native.node ] || [ ! -f dist/bin/firezone-gateway.js ] || [ ! -d node_modules ]; then
  echo "Installing npm dependencies and building (npm ci)..."
  npm ci --no-audit --no-fund >/dev/null
fi

exec node --import tsx tools/demo/demo.ts "$@"
