#define _GNU_SOURCE
#include "common.h"
#include "offload.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/*
 * A poller watches one non-blocking fd with uv_poll (level-triggered epoll inside libuv's loop).
 * On readiness it reads up to `slots` packets into the JS-owned ring and calls the JS callback
 * once with (count, errno). The ring is reused on the next wake-up, so JS must finish with (or
 * copy) the packets before the callback returns.
 *
 * POLLER_UDP_GRO: the socket has UDP_GRO, so one receive may carry up to FZ_GRO_MAX_SEGMENTS
 * datagrams of one size back to back (the last may be shorter); each slot is a 64 KiB receive
 * buffer and every datagram gets its own meta entry pointing into it (no copy). `count` is then
 * the number of datagrams, up to slots x FZ_GRO_MAX_SEGMENTS.
 */

/*
 * POLLER_TUN_VNET: a TUN fd with IFF_VNET_HDR. Each read (up to 64 KiB into a native buffer) is
 * split by `offload_split` into MTU-sized packets with complete checksums, one per slot. A read
 * whose segments do not all fit the ring stays pending: the rest goes out in the next batch,
 * delivered before the poller returns to libuv (so nothing waits for the fd to be readable again).
 */
enum poller_kind { POLLER_TUN = 0, POLLER_UDP = 1, POLLER_UDP_GRO = 2, POLLER_TUN_VNET = 3 };

#define CONTROL_SIZE 128

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_ref ring_ref;
  napi_ref meta_ref;
  napi_async_context async_context;
  enum poller_kind kind;
  int fd;
  uint8_t *ring;
  size_t ring_length;
  uint32_t slot_size;
  uint32_t headroom;
  uint32_t slots;
  uint8_t *meta;
  size_t meta_length;
  size_t meta_entries;
  struct mmsghdr *msgs;
  struct iovec *iovs;
  struct sockaddr_storage *names;
  uint8_t *controls;
  uint8_t *frame; /* POLLER_TUN_VNET: the last read */
  size_t frame_length; /* 0: nothing pending */
  uint32_t frame_next; /* first segment not yet delivered */
  uint64_t malformed;
  int stopped;
  int closed;
  int finalized;
} poller_t;

static void poller_free(poller_t *p) {
  free(p->frame);
  free(p->msgs);
  free(p->iovs);
  free(p->names);
  free(p->controls);
  free(p);
}

static void on_closed(uv_handle_t *handle) {
  poller_t *p = (poller_t *)handle->data;
  p->closed = 1;
  napi_delete_reference(p->env, p->callback);
  napi_delete_reference(p->env, p->ring_ref);
  napi_delete_reference(p->env, p->meta_ref);
  napi_async_destroy(p->env, p->async_context);
  if (p->finalized) poller_free(p);
}

static void poller_stop(poller_t *p) {
  if (p->stopped) return;
  p->stopped = 1;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  poller_t *p = (poller_t *)data;
  p->finalized = 1;
  poller_stop(p);
  if (p->closed) poller_free(p);
}

static int read_tun(poller_t *p, int *err) {
  uint32_t count = 0;
  while (count < p->slots) {
    uint8_t *slot = p->ring + (size_t)count * p->slot_size + p->headroom;
    ssize_t r = read(p->fd, slot, p->slot_size - p->headroom);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    if (r == 0) break;
    fz_put_u32(p->meta + (size_t)count * 4, (uint32_t)r);
    count++;
  }
  return (int)count;
}

/* Splits the pending frame into the ring from slot *count on; clears it once fully delivered. */
static void emit_frame(poller_t *p, uint32_t *count) {
  uint32_t emitted, total;
  uint8_t *out = p->ring + (size_t)*count * p->slot_size + p->headroom;
  uint32_t *lengths = (uint32_t *)p->meta + *count;
  int rc = offload_split(p->frame, p->frame_length, p->frame_next, out, p->slot_size, p->slot_size - p->headroom,
                         p->slots - *count, lengths, &emitted, &total);
  if (rc != OFFLOAD_OK) {
    p->malformed++;
    p->frame_length = 0;
    return;
  }
  *count += emitted;
  p->frame_next += emitted;
  if (p->frame_next >= total) p->frame_length = 0;
}

static int read_tun_vnet(poller_t *p, int *err) {
  uint32_t count = 0;
  if (p->frame_length != 0) emit_frame(p, &count);
  while (count < p->slots && p->frame_length == 0) {
    ssize_t r = read(p->fd, p->frame, VNET_FRAME_MAX);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    if (r == 0) break;
    p->frame_length = (size_t)r;
    p->frame_next = 0;
    emit_frame(p, &count);
  }
  return (int)count;
}

/*
 * Writes the meta entry `entry` for message i's datagram at `offset` in the ring; returns the
 * GRO segment size of the message (0 when it was not coalesced).
 */
static uint32_t fill_udp_meta(poller_t *p, uint32_t i, uint32_t entry, uint32_t offset, uint32_t length) {
  uint8_t *m = p->meta + (size_t)entry * FZ_RECV_META_STRIDE;
  struct msghdr *h = &p->msgs[i].msg_hdr;
  uint32_t segment = 0;
  memset(m, 0, FZ_RECV_META_STRIDE);
  fz_put_u32(m + FZ_RECV_META_LENGTH, length);
  fz_put_u32(m + FZ_RECV_META_OFFSET, offset);
  uint8_t flags = (h->msg_flags & MSG_TRUNC) ? FZ_RECV_FLAG_TRUNCATED : 0;
  const struct sockaddr_storage *name = &p->names[i];
  if (name->ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)name;
    m[FZ_RECV_META_FAMILY] = 4;
    fz_put_u16(m + FZ_RECV_META_SRC_PORT, ntohs(sin->sin_port));
    memcpy(m + FZ_RECV_META_SRC_IP, &sin->sin_addr, 4);
  } else if (name->ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)name;
    m[FZ_RECV_META_FAMILY] = 6;
    fz_put_u16(m + FZ_RECV_META_SRC_PORT, ntohs(sin6->sin6_port));
    memcpy(m + FZ_RECV_META_SRC_IP, &sin6->sin6_addr, 16);
  }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo info;
      memcpy(&info, CMSG_DATA(c), sizeof info);
      memcpy(m + FZ_RECV_META_DST_IP, &info.ipi_addr, 4);
      fz_put_u32(m + FZ_RECV_META_IFINDEX, (uint32_t)info.ipi_ifindex);
      flags |= FZ_RECV_FLAG_PKTINFO;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo info;
      memcpy(&info, CMSG_DATA(c), sizeof info);
      memcpy(m + FZ_RECV_META_DST_IP, &info.ipi6_addr, 16);
      fz_put_u32(m + FZ_RECV_META_IFINDEX, info.ipi6_ifindex);
      flags |= FZ_RECV_FLAG_PKTINFO;
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS && c->cmsg_len >= CMSG_LEN(1)) {
      m[FZ_RECV_META_TOS] = *CMSG_DATA(c);
      flags |= FZ_RECV_FLAG_TOS;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int tclass;
      memcpy(&tclass, CMSG_DATA(c), sizeof tclass);
      m[FZ_RECV_META_TOS] = (uint8_t)tclass;
      flags |= FZ_RECV_FLAG_TOS;
    } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int size;
      memcpy(&size, CMSG_DATA(c), sizeof size);
      if (size > 0) segment = (uint32_t)size;
    }
  }
  m[FZ_RECV_META_FLAGS] = flags;
  return segment;
}

static int read_udp(poller_t *p, int *err) {
  for (uint32_t i = 0; i < p->slots; i++) {
    struct msghdr *h = &p->msgs[i].msg_hdr;
    h->msg_namelen = sizeof(struct sockaddr_storage);
    h->msg_controllen = CONTROL_SIZE;
    h->msg_flags = 0;
  }
  int n;
  do n = recvmmsg(p->fd, p->msgs, p->slots, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
    return 0;
  }
  if (p->kind == POLLER_UDP) {
    for (int i = 0; i < n; i++) {
      fill_udp_meta(p, (uint32_t)i, (uint32_t)i, (uint32_t)((size_t)i * p->slot_size + p->headroom), p->msgs[i].msg_len);
    }
    return n;
  }
  /* GRO: split each receive into its datagrams; every entry repeats the message's addresses. */
  uint32_t entries = 0;
  for (int i = 0; i < n; i++) {
    uint32_t base = (uint32_t)((size_t)i * p->slot_size + p->headroom);
    uint32_t total = p->msgs[i].msg_len;
    uint32_t first = entries;
    uint32_t segment = fill_udp_meta(p, (uint32_t)i, entries++, base, total);
    if (segment == 0 || segment >= total || (p->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) continue;
    uint8_t *head = p->meta + (size_t)first * FZ_RECV_META_STRIDE;
    fz_put_u32(head + FZ_RECV_META_LENGTH, segment);
    fz_put_u16(head + FZ_RECV_META_SEGMENT_SIZE, (uint16_t)segment);
    head[FZ_RECV_META_FLAGS] |= FZ_RECV_FLAG_COALESCED;
    for (uint32_t at = segment; at < total && entries < (uint32_t)p->meta_entries; at += segment) {
      uint8_t *m = p->meta + (size_t)entries++ * FZ_RECV_META_STRIDE;
      memcpy(m, head, FZ_RECV_META_STRIDE);
      fz_put_u32(m + FZ_RECV_META_OFFSET, base + at);
      fz_put_u32(m + FZ_RECV_META_LENGTH, total - at < segment ? total - at : segment);
    }
  }
  return (int)entries;
}

static void deliver(poller_t *p, int count, int err) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, receiver, argv[2], result;
  if (napi_get_reference_value(env, p->callback, &callback) == napi_ok && callback != NULL) {
    napi_get_global(env, &receiver);
    argv[0] = fz_make_i32(env, count);
    argv[1] = fz_make_i32(env, err);
    napi_status status = napi_make_callback(env, p->async_context, receiver, callback, 2, argv, &result);
    if (status == napi_pending_exception) {
      napi_value exception;
      napi_get_and_clear_last_exception(env, &exception);
      napi_fatal_exception(env, exception);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  poller_t *p = (poller_t *)handle->data;
  if (p->stopped) return;
  int err = 0, count;
  if (status < 0) {
    count = 0;
    err = -status;
  } else if (p->kind == POLLER_TUN) {
    count = read_tun(p, &err);
  } else if (p->kind == POLLER_TUN_VNET) {
    count = read_tun_vnet(p, &err);
  } else {
    count = read_udp(p, &err);
  }
  if (count == 0 && err == 0) return;
  deliver(p, count, err);
  /* The rest of a read that did not fit the ring goes out now (JavaScript is done with the ring). */
  while (p->kind == POLLER_TUN_VNET && p->frame_length != 0 && !p->stopped) {
    uint32_t more = 0;
    emit_frame(p, &more);
    if (more > 0) deliver(p, (int)more, 0);
  }
}

static int setup_udp_messages(poller_t *p) {
  p->msgs = calloc(p->slots, sizeof *p->msgs);
  p->iovs = calloc(p->slots, sizeof *p->iovs);
  p->names = calloc(p->slots, sizeof *p->names);
  p->controls = calloc(p->slots, CONTROL_SIZE);
  if (!p->msgs || !p->iovs || !p->names || !p->controls) return 0;
  for (uint32_t i = 0; i < p->slots; i++) {
    p->iovs[i].iov_base = p->ring + (size_t)i * p->slot_size + p->headroom;
    p->iovs[i].iov_len = p->slot_size - p->headroom;
    struct msghdr *h = &p->msgs[i].msg_hdr;
    h->msg_name = &p->names[i];
    h->msg_iov = &p->iovs[i];
    h->msg_iovlen = 1;
    h->msg_control = p->controls + (size_t)i * CONTROL_SIZE;
  }
  return 1;
}

/*
 * pollerStart(fd, kind: 0 tun | 1 udp | 2 udp with GRO, ring: Uint8Array, slotSize, headroom,
 *             slots, meta: Uint8Array, callback(count, errno)) -> handle
 * For kind 2, meta has room for slots x FZ_GRO_MAX_SEGMENTS entries.
 */
napi_value fz_poller_start(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "pollerStart(fd, kind, ring, slotSize, headroom, slots, meta, callback)");
    return NULL;
  }
  int32_t fd, kind;
  uint32_t slot_size, headroom, slots;
  uint8_t *ring, *meta;
  size_t ring_length, meta_length;
  if (!fz_get_i32(env, argv[0], &fd) || !fz_get_i32(env, argv[1], &kind) ||
      !fz_get_bytes(env, argv[2], &ring, &ring_length) || !fz_get_u32(env, argv[3], &slot_size) ||
      !fz_get_u32(env, argv[4], &headroom) || !fz_get_u32(env, argv[5], &slots) ||
      !fz_get_bytes(env, argv[6], &meta, &meta_length)) {
    return NULL;
  }
  napi_valuetype callback_type;
  napi_typeof(env, argv[7], &callback_type);
  int tun = kind == POLLER_TUN || kind == POLLER_TUN_VNET;
  size_t stride = tun ? 4 : FZ_RECV_META_STRIDE;
  size_t entries_per_slot = kind == POLLER_UDP_GRO ? FZ_GRO_MAX_SEGMENTS : 1;
  if (callback_type != napi_function || kind < POLLER_TUN || kind > POLLER_TUN_VNET || slots == 0 ||
      slots > FZ_MAX_BATCH || headroom >= slot_size || (size_t)slots * slot_size > ring_length ||
      (size_t)slots * entries_per_slot * stride > meta_length) {
    napi_throw_range_error(env, NULL, "pollerStart: invalid arguments");
    return NULL;
  }

  uv_loop_t *loop;
  FZ_CALL(env, napi_get_uv_event_loop(env, &loop));
  poller_t *p = calloc(1, sizeof *p);
  if (!p) return fz_throw_errno(env, ENOMEM, "pollerStart");
  p->env = env;
  p->kind = (enum poller_kind)kind;
  p->fd = fd;
  p->ring = ring;
  p->ring_length = ring_length;
  p->slot_size = slot_size;
  p->headroom = headroom;
  p->slots = slots;
  p->meta = meta;
  p->meta_length = meta_length;
  p->meta_entries = meta_length / stride;
  if (!tun && !setup_udp_messages(p)) {
    poller_free(p);
    return fz_throw_errno(env, ENOMEM, "pollerStart");
  }
  if (p->kind == POLLER_TUN_VNET && (p->frame = malloc(VNET_FRAME_MAX)) == NULL) {
    poller_free(p);
    return fz_throw_errno(env, ENOMEM, "pollerStart");
  }
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc != 0) {
    poller_free(p);
    return fz_throw_errno(env, -rc, "uv_poll_init");
  }
  p->handle.data = p;
  napi_value resource_name;
  napi_create_string_utf8(env, tun ? "FirezoneTunPoller" : "FirezoneUdpPoller",
                          NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &p->async_context);
  napi_create_reference(env, argv[7], 1, &p->callback);
  napi_create_reference(env, argv[2], 1, &p->ring_ref);
  napi_create_reference(env, argv[6], 1, &p->meta_ref);
  rc = uv_poll_start(&p->handle, UV_READABLE, on_readable);
  if (rc != 0) {
    p->finalized = 1;
    poller_stop(p);
    return fz_throw_errno(env, -rc, "uv_poll_start");
  }
  napi_value external;
  FZ_CALL(env, napi_create_external(env, p, on_finalize, NULL, &external));
  return external;
}

/* pollerStop(handle): stops watching; the fd stays open. Safe to call more than once. */
napi_value fz_poller_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "pollerStop(handle)");
    return NULL;
  }
  poller_stop((poller_t *)data);
  return NULL;
}
