#!/usr/bin/env bash
# Installs the firezone-gateway executable as a hardened systemd service, as the official
# gateway-systemd-install.sh does, from a release directory you host or a file you copied.
#
#   FIREZONE_TOKEN=<token> FIREZONE_ID=<id> [FIREZONE_API_URL=...] [FIREZONE_NAME=...] \
#   FIREZONE_ARTIFACT_URL=https://your.host/firezone-gateway   # serves <version>/<arch> and SHA256SUMS
#   # or FIREZONE_EXECUTABLE=/path/to/firezone-gateway (with FIREZONE_SHA256=<sum> to check it)
#   bash gateway-systemd-install.sh
#
# Installs /opt/firezone/bin/firezone-gateway, /usr/local/bin/firezone-gateway-init, the token
# in /etc/firezone/gateway-token (a systemd credential) and the unit
# /etc/systemd/system/firezone-gateway.service; then enables and starts it.
set -euo pipefail

FIREZONE_NAME=${FIREZONE_NAME:-$(hostname)}
FIREZONE_ID=${FIREZONE_ID:-}
FIREZONE_TOKEN=${FIREZONE_TOKEN:-}
FIREZONE_API_URL=${FIREZONE_API_URL:-wss://api.firezone.dev}
FIREZONE_VERSION=${FIREZONE_VERSION:-latest}
FIREZONE_ARTIFACT_URL=${FIREZONE_ARTIFACT_URL:-}
FIREZONE_EXECUTABLE=${FIREZONE_EXECUTABLE:-}
FIREZONE_SHA256=${FIREZONE_SHA256:-}
RUST_LOG=${RUST_LOG:-info}
OTLP_GRPC_ENDPOINT=${OTLP_GRPC_ENDPOINT:-}
FIREZONE_LOG_FORMAT=${FIREZONE_LOG_FORMAT:-}

SERVICE_FILE=${SERVICE_FILE:-/etc/systemd/system/firezone-gateway.service}
TOKEN_FILE=${TOKEN_FILE:-/etc/firezone/gateway-token}
TARGET_DIR=/opt/firezone/bin
BINARY_PATH=$TARGET_DIR/firezone-gateway
INIT_PATH=/usr/local/bin/firezone-gateway-init

fail() {
    echo "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "Run as root (sudo bash gateway-systemd-install.sh)"
[ -n "$FIREZONE_ID" ] || fail "FIREZONE_ID is required"
[ -n "$FIREZONE_TOKEN" ] || [ -s "$TOKEN_FILE" ] || fail "FIREZONE_TOKEN is required"
[ -n "$FIREZONE_EXECUTABLE" ] || [ -n "$FIREZONE_ARTIFACT_URL" ] ||
    fail "Set FIREZONE_EXECUTABLE (a copied executable) or FIREZONE_ARTIFACT_URL (where the release directory is served)"
command -v ip >/dev/null || fail "iproute2 is required (apt-get install iproute2)"
command -v iptables >/dev/null || fail "iptables is required (apt-get install iptables)"
systemd_version=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
case "$systemd_version" in "" | *[!0-9]*) fail "systemctl is required" ;; esac
[ "$systemd_version" -ge 247 ] || fail "systemd 247 or newer is required to pass FIREZONE_TOKEN as a credential"

case "$(uname -m)" in
    x86_64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) fail "Unsupported architecture: $(uname -m)" ;;
esac

install -d -m 0755 "$TARGET_DIR"
download=$(mktemp "$BINARY_PATH.XXXXXX")
trap 'rm -f "$download"' EXIT
if [ -n "$FIREZONE_EXECUTABLE" ]; then
    cp "$FIREZONE_EXECUTABLE" "$download"
else
    command -v curl >/dev/null || fail "curl is required to download from FIREZONE_ARTIFACT_URL"
    curl -fsSL "$FIREZONE_ARTIFACT_URL/$FIREZONE_VERSION/$arch" -o "$download"
    if [ -z "$FIREZONE_SHA256" ]; then
        FIREZONE_SHA256=$(curl -fsSL "$FIREZONE_ARTIFACT_URL/../SHA256SUMS" |
            awk -v path="firezone-gateway/$FIREZONE_VERSION/$arch" '$2 == path { print $1 }')
    fi
fi
if [ -n "$FIREZONE_SHA256" ]; then
    actual=$(sha256sum "$download" | awk '{ print $1 }')
    [ "$actual" = "$FIREZONE_SHA256" ] || fail "Checksum mismatch: expected $FIREZONE_SHA256, got $actual"
fi
head -c 4 "$download" | grep -q 'ELF' || fail "$download is not an executable"
chmod 0755 "$download"
mv "$download" "$BINARY_PATH"
trap - EXIT
"$BINARY_PATH" --version

getent group firezone >/dev/null || groupadd --system firezone
id -u firezone >/dev/null 2>&1 || useradd --system --gid firezone --shell /usr/sbin/nologin --home-dir /var/lib/firezone firezone

install -d -m 0755 -o root -g root /etc/firezone
if [ -n "$FIREZONE_TOKEN" ]; then
    umask 077
    token_tmp=$(mktemp "$TOKEN_FILE.XXXXXX")
    printf '%s\n' "$FIREZONE_TOKEN" >"$token_tmp"
    chown root:root "$token_tmp"
    chmod 0400 "$token_tmp"
    mv "$token_tmp" "$TOKEN_FILE"
    umask 022
fi

cat >"$INIT_PATH" <<'EOF'
#!/bin/sh
# Runs as root before each start of firezone-gateway.service: forwarding and masquerading.
set -eu
for tool in iptables ip6tables; do
    case "$tool" in iptables) source=100.64.0.0/11 ;; *) source=fd00:2021:1111::/107 ;; esac
    "$tool" -C FORWARD -i tun-firezone -j ACCEPT >/dev/null 2>&1 || "$tool" -I FORWARD 1 -i tun-firezone -j ACCEPT
    "$tool" -C FORWARD -o tun-firezone -j ACCEPT >/dev/null 2>&1 || "$tool" -I FORWARD 1 -o tun-firezone -j ACCEPT
    for egress in 'e+' 'w+'; do
        "$tool" -t nat -C POSTROUTING -s "$source" -o "$egress" -j MASQUERADE >/dev/null 2>&1 ||
            "$tool" -t nat -A POSTROUTING -s "$source" -o "$egress" -j MASQUERADE
    done
done
sysctl -q -w net.ipv4.ip_forward=1
sysctl -q -w net.ipv4.conf.all.src_valid_mark=1
sysctl -q -w net.ipv6.conf.all.disable_ipv6=0
sysctl -q -w net.ipv6.conf.all.forwarding=1
sysctl -q -w net.ipv6.conf.default.forwarding=1
EOF
chmod 0755 "$INIT_PATH"

cat >"$SERVICE_FILE" <<EOF
[Unit]
Description=Firezone Gateway
After=network.target
Documentation=https://www.firezone.dev/kb

[Service]
# Customise with "systemctl edit firezone-gateway"; re-running the installer rewrites this file.
Type=simple
User=firezone
Group=firezone
SyslogIdentifier=firezone-gateway

LoadCredential=FIREZONE_TOKEN:$TOKEN_FILE
Environment="FIREZONE_NAME=$FIREZONE_NAME"
Environment="FIREZONE_ID=$FIREZONE_ID"
Environment="FIREZONE_API_URL=$FIREZONE_API_URL"
Environment="RUST_LOG=$RUST_LOG"
${FIREZONE_LOG_FORMAT:+Environment="FIREZONE_LOG_FORMAT=$FIREZONE_LOG_FORMAT"}
${OTLP_GRPC_ENDPOINT:+Environment="OTLP_GRPC_ENDPOINT=$OTLP_GRPC_ENDPOINT"}

ExecStartPre=+$INIT_PATH
ExecStart=$BINARY_PATH

TimeoutStartSec=15s
TimeoutStopSec=15s
Restart=always
RestartSec=7

StateDirectory=firezone
StateDirectoryMode=0750
RuntimeDirectory=firezone-gateway
RuntimeDirectoryMode=0700

# The official hardening, less MemoryDenyWriteExecute (V8's JIT cannot run under it), plus
# AF_UNIX (Node.js talks to child processes over a socketpair) and the pkey calls V8 makes.
PrivateTmp=true
ProtectSystem=full
ProtectHome=read-only
NoNewPrivileges=true
RestrictNamespaces=yes
LockPersonality=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
AmbientCapabilities=CAP_NET_ADMIN
CapabilityBoundingSet=CAP_NET_ADMIN
InaccessiblePaths=/root /home
LimitNOFILE=4096
LimitNPROC=512
LimitCORE=0
SystemCallFilter=@system-service
SystemCallFilter=pkey_alloc pkey_free pkey_mprotect

[Install]
WantedBy=multi-user.target
EOF

systemctl daemon-reload
systemctl enable firezone-gateway
systemctl restart firezone-gateway

echo "Firezone Gateway installed successfully!"
echo "Run 'systemctl status firezone-gateway' to check the status."
