{
  "targets": [
    {
      "target_name": "firezone_native",
      "sources": ["native/addon.c", "native/tun.c", "native/udp.c", "native/poller.c", "native/aead.c", "native/offload.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
