# Sourced by .ci/run and the demo: makes sure `node` on PATH is the Node.js this project requires
# (24 LTS). Where the system's Node is older, the official Linux build is taken from the npm
# registry (package node-linux-<arch>, binary and headers) into .node/ in the checkout, and
# node-gyp is pointed at its headers so the native addon builds without any other download.
# shellcheck shell=bash

FZ_NODE_VERSION=24.22.3
FZ_NODE_MAJOR=${FZ_NODE_VERSION%%.*}

fz_node_major() {
  command -v node >/dev/null 2>&1 || { echo 0; return; }
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

fz_ensure_node() {
  local root arch dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="$root/.node"
  if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" -p 'process.versions.node')" = "$FZ_NODE_VERSION" ]; then
    :
  elif [ "$(fz_node_major)" -ge "$FZ_NODE_MAJOR" ]; then
    return 0
  else
    case "$(uname -m)" in
      x86_64) arch=x64 ;;
      aarch64) arch=arm64 ;;
      *) echo "No Node.js $FZ_NODE_MAJOR package for $(uname -m) on the npm registry; install Node.js $FZ_NODE_MAJOR yourself." >&2; return 1 ;;
    esac
    echo "Fetching Node.js $FZ_NODE_VERSION (node-linux-$arch) from the npm registry into .node/ ..." >&2
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$FZ_NODE_VERSION" >/dev/null) || { rm -rf "$tmp"; return 1; }
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$dir" --strip-components=1
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
  # node-gyp builds against these headers instead of downloading them.
  export npm_config_nodedir="$dir"
}

fz_ensure_node
