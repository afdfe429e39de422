#!/bin/sh
# Container entrypoint, as the official image's: the token may be given as the path of a file
# (a Docker or Kubernetes secret), and the client ranges are masqueraded inside the container.
# Forwarding sysctls are set by the runtime (--sysctl), not here.

if [ -n "${FIREZONE_TOKEN:-}" ] && [ -f "${FIREZONE_TOKEN}" ]; then
    FIREZONE_TOKEN="$(cat "${FIREZONE_TOKEN}")"
    export FIREZONE_TOKEN
fi

IFACE=tun-firezone
for tool in iptables ip6tables; do
    case "$tool" in
        iptables) source=100.64.0.0/11 ;;
        *) source=fd00:2021:1111::/107 ;;
    esac
    "$tool" -C FORWARD -i "$IFACE" -j ACCEPT >/dev/null 2>&1 || "$tool" -I FORWARD 1 -i "$IFACE" -j ACCEPT
    "$tool" -C FORWARD -o "$IFACE" -j ACCEPT >/dev/null 2>&1 || "$tool" -I FORWARD 1 -o "$IFACE" -j ACCEPT
    for egress in 'e+' 'w+'; do
        "$tool" -t nat -C POSTROUTING -s "$source" -o "$egress" -j MASQUERADE >/dev/null 2>&1 ||
            "$tool" -t nat -A POSTROUTING -s "$source" -o "$egress" -j MASQUERADE
    done
done

exec "$@"
