#define _GNU_SOURCE
#include "common.h"
#include "offload.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#define TUN_PATH "/dev/net/tun"
#define TUN_MAX_QUEUES 64
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

static const uint8_t zero_vnet_hdr[VNET_HDR_SIZE];

static int ensure_tun_device_node(void) {
  struct stat st;
  if (stat(TUN_PATH, &st) == 0) return 0;
  if (mkdir("/dev/net", 0751) != 0 && errno != EEXIST) return errno;
  if (mknod(TUN_PATH, S_IFCHR | 0666, makedev(10, 200)) != 0 && errno != EEXIST) return errno;
  return 0;
}

/*
 * tunOpen(name: string, queues: number, offloads: boolean) -> { name, fds, vnet, offloads }
 * With `offloads` every queue is opened with IFF_VNET_HDR and the device is asked for checksum,
 * TSO and (kernels 6.2+) USO offloads: `offloads` reports the TUN_F_* bits the kernel took (0 when
 * it refused them all; the virtio header is then still there, always without GSO).
 */
napi_value fz_tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "tunOpen(name, queues, offloads)");
    return NULL;
  }
  bool vnet = false;
  if (argc >= 3 && napi_get_value_bool(env, argv[2], &vnet) != napi_ok) {
    napi_throw_type_error(env, NULL, "offloads must be a boolean");
    return NULL;
  }
  char name[IFNAMSIZ];
  size_t name_length = 0;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_length) != napi_ok) {
    napi_throw_type_error(env, NULL, "name must be a string");
    return NULL;
  }
  uint32_t queues;
  if (!fz_get_u32(env, argv[1], &queues)) return NULL;
  if (queues < 1 || queues > TUN_MAX_QUEUES) {
    napi_throw_range_error(env, NULL, "queues must be between 1 and 64");
    return NULL;
  }

  int err = ensure_tun_device_node();
  if (err != 0) return fz_throw_errno(env, err, "Failed to create " TUN_PATH);

  int fds[TUN_MAX_QUEUES];
  struct ifreq ifr;
  for (uint32_t i = 0; i < queues; i++) {
    int fd = open(TUN_PATH, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      err = errno;
      for (uint32_t j = 0; j < i; j++) close(fds[j]);
      return fz_throw_errno(env, err, "Failed to open '" TUN_PATH "'");
    }
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, name, name_length < IFNAMSIZ - 1 ? name_length : IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (vnet ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
      err = errno;
      close(fd);
      for (uint32_t j = 0; j < i; j++) close(fds[j]);
      return fz_throw_errno(env, err, "Failed to set flags on TUN device");
    }
    fds[i] = fd;
  }
  unsigned int offloads = 0;
  if (vnet) {
    unsigned int wanted[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM};
    for (size_t k = 0; k < sizeof wanted / sizeof wanted[0]; k++) {
      if (ioctl(fds[0], TUNSETOFFLOAD, wanted[k]) == 0) {
        offloads = wanted[k];
        break;
      }
    }
  }

  napi_value result, fd_array, actual_name;
  FZ_CALL(env, napi_create_object(env, &result));
  FZ_CALL(env, napi_create_array_with_length(env, queues, &fd_array));
  for (uint32_t i = 0; i < queues; i++) {
    FZ_CALL(env, napi_set_element(env, fd_array, i, fz_make_i32(env, fds[i])));
  }
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  FZ_CALL(env, napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &actual_name));
  FZ_CALL(env, napi_set_named_property(env, result, "name", actual_name));
  FZ_CALL(env, napi_set_named_property(env, result, "fds", fd_array));
  FZ_CALL(env, napi_set_named_property(env, result, "vnet", fz_make_i32(env, vnet ? 1 : 0)));
  FZ_CALL(env, napi_set_named_property(env, result, "offloads", fz_make_i32(env, (int32_t)offloads)));
  return result;
}

/* One packet to a TUN fd: behind an all-zero virtio header when the device has IFF_VNET_HDR. */
static ssize_t write_packet(int fd, int vnet, const uint8_t *data, size_t length) {
  ssize_t r;
  if (!vnet) {
    do r = write(fd, data, length);
    while (r < 0 && errno == EINTR);
    return r;
  }
  struct iovec iov[2] = {{(void *)zero_vnet_hdr, VNET_HDR_SIZE}, {(void *)data, length}};
  do r = writev(fd, iov, 2);
  while (r < 0 && errno == EINTR);
  return r;
}

/* tunWrite(fd, packet: Uint8Array, vnet?: boolean) -> 0 or errno */
napi_value fz_tun_write(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *data;
  size_t length;
  bool vnet = false;
  if (argc < 2 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &data, &length)) return NULL;
  if (argc >= 3) napi_get_value_bool(env, argv[2], &vnet);
  return fz_make_i32(env, write_packet(fd, vnet, data, length) >= 0 ? 0 : errno);
}

/*
 * tunWriteBatch(fd, buffer: Uint8Array, spans: Uint32Array, count) -> packets written.
 * spans holds (offset, length) pairs into buffer. A TUN fd takes one packet per write(), so a
 * batch is one N-API call and one syscall per packet. Failed packets (EAGAIN when the queue is
 * full, EIO while the link is down) are skipped: the caller counts count - written as drops.
 * A failed packet's span is overwritten with (errno, 0).
 */
napi_value fz_tun_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *buffer, *span_bytes;
  size_t buffer_length, span_length;
  uint32_t count;
  bool vnet = false;
  if (argc < 4 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &buffer, &buffer_length) ||
      !fz_get_bytes(env, argv[2], &span_bytes, &span_length) || !fz_get_u32(env, argv[3], &count)) {
    return NULL;
  }
  if (argc >= 5) napi_get_value_bool(env, argv[4], &vnet);
  if ((size_t)count * 8 > span_length) {
    napi_throw_range_error(env, NULL, "count exceeds spans");
    return NULL;
  }
  uint32_t *spans = (uint32_t *)span_bytes;
  int32_t written = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t offset = spans[2 * i], length = spans[2 * i + 1];
    ssize_t r;
    if ((size_t)offset + length > buffer_length) {
      r = -1;
      errno = EINVAL;
    } else {
      r = write_packet(fd, vnet, buffer + offset, length);
    }
    if (r >= 0) {
      written++;
    } else {
      spans[2 * i] = (uint32_t)errno;
      spans[2 * i + 1] = 0;
    }
  }
  return fz_make_i32(env, written);
}

/*
 * TUN writer thread: write() on a TUN fd runs the kernel's whole receive path (routing,
 * netfilter, NAT, forwarding) in the caller, so each queue gets a thread that does those
 * syscalls off the JavaScript thread. JavaScript is the only producer and the thread the only
 * consumer of a ring of preallocated slots; a push is one memcpy and two atomic stores, and a
 * futex wake only when the thread announced it is about to sleep.
 *
 * A full ring drops the packet at the push (the caller counts it), as the kernel's own queue
 * would: blocking the JS thread is what this is meant to avoid. A failed write() (EIO while the
 * link is down; a TUN write does not wait for queue space, so EAGAIN is not expected) is counted
 * in `errors` and the packet dropped, never retried.
 */
typedef struct {
  int fd;
  uint32_t slots; /* a power of two */
  uint32_t slot_size;
  uint8_t *ring; /* slots x (u32 length + slot_size bytes) */
  _Atomic uint32_t head; /* next slot the producer fills; only JS stores it */
  _Atomic uint32_t tail; /* next slot the thread writes; only the thread stores it */
  _Atomic uint32_t wake_seq; /* the futex word */
  _Atomic int sleeping;
  _Atomic int stopping;
  _Atomic uint64_t written;
  _Atomic uint64_t written_bytes;
  _Atomic uint64_t errors;
  _Atomic int last_errno;
  /* Writes that carried two or more coalesced segments (IFF_VNET_HDR only). */
  _Atomic uint64_t coalesced_writes;
  int vnet;
  coalescer *merge; /* the thread's, with vnet */
  pthread_t thread;
  int joined;
} tun_writer;

typedef struct {
  uint64_t packets, bytes, errors, coalesced;
  int last_errno;
} writer_tally;

/* Writes what the coalescer holds, counting every segment in it. */
static void writer_flush_merge(tun_writer *w, writer_tally *t) {
  coalescer *c = w->merge;
  if (c->count == 0) return;
  uint32_t segments = c->count;
  size_t bytes = c->length + (size_t)(segments - 1) * c->header;
  size_t frame = coalescer_finish(c);
  ssize_t r;
  do r = write(w->fd, c->frame, frame);
  while (r < 0 && errno == EINTR);
  if (r >= 0) {
    t->packets += segments;
    t->bytes += bytes;
    if (segments > 1) t->coalesced++;
  } else {
    t->errors += segments;
    t->last_errno = errno;
  }
  coalescer_reset(c);
}

/* One packet from the ring: joins the pending merge, starts one, or is written alone. */
static void writer_vnet_packet(tun_writer *w, writer_tally *t, const uint8_t *data, uint32_t length) {
  if (coalescer_append(w->merge, data, length)) return;
  writer_flush_merge(w, t);
  if (coalescer_start(w->merge, data, length)) return;
  if (write_packet(w->fd, 1, data, length) >= 0) {
    t->packets++;
    t->bytes += length;
  } else {
    t->errors++;
    t->last_errno = errno;
  }
}

#define TUN_WRITER_SLOT_HEADER 4
#define TUN_WRITER_MAX_SLOTS 65536

static size_t tun_writer_stride(const tun_writer *w) { return TUN_WRITER_SLOT_HEADER + (size_t)w->slot_size; }

static void tun_writer_wake(tun_writer *w) {
  atomic_fetch_add_explicit(&w->wake_seq, 1, memory_order_seq_cst);
  syscall(SYS_futex, &w->wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *tun_writer_main(void *arg) {
  tun_writer *w = arg;
  const size_t stride = tun_writer_stride(w);
  const uint32_t mask = w->slots - 1;
  uint32_t tail = atomic_load_explicit(&w->tail, memory_order_relaxed);
  for (;;) {
    uint32_t head = atomic_load_explicit(&w->head, memory_order_acquire);
    if (head == tail) {
      if (atomic_load_explicit(&w->stopping, memory_order_acquire)) break;
      uint32_t seq = atomic_load_explicit(&w->wake_seq, memory_order_seq_cst);
      atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
      /* Re-check after announcing: a push that missed `sleeping` is visible here. */
      if (atomic_load_explicit(&w->head, memory_order_seq_cst) == tail &&
          !atomic_load_explicit(&w->stopping, memory_order_seq_cst)) {
        syscall(SYS_futex, &w->wake_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
      }
      atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
      continue;
    }
    writer_tally t = {0, 0, 0, 0, 0};
    while (tail != head) {
      uint8_t *slot = w->ring + (size_t)(tail & mask) * stride;
      uint32_t length;
      memcpy(&length, slot, sizeof length);
      if (w->vnet) {
        writer_vnet_packet(w, &t, slot + TUN_WRITER_SLOT_HEADER, length);
      } else if (write_packet(w->fd, 0, slot + TUN_WRITER_SLOT_HEADER, length) >= 0) {
        t.packets++;
        t.bytes += length;
      } else {
        t.errors++;
        t.last_errno = errno;
      }
      tail++;
      /* Free each slot as soon as it is taken (written or copied into the merge) so the producer sees space early. */
      atomic_store_explicit(&w->tail, tail, memory_order_release);
      /* Keep merging while the producer is ahead; write the merge once it has caught up. */
      if (tail == head) head = atomic_load_explicit(&w->head, memory_order_acquire);
    }
    if (w->vnet) writer_flush_merge(w, &t);
    if (t.packets) {
      atomic_fetch_add_explicit(&w->written, t.packets, memory_order_relaxed);
      atomic_fetch_add_explicit(&w->written_bytes, t.bytes, memory_order_relaxed);
    }
    if (t.coalesced) atomic_fetch_add_explicit(&w->coalesced_writes, t.coalesced, memory_order_relaxed);
    if (t.errors) {
      atomic_fetch_add_explicit(&w->errors, t.errors, memory_order_relaxed);
      atomic_store_explicit(&w->last_errno, t.last_errno, memory_order_relaxed);
    }
  }
  return NULL;
}

static void tun_writer_join(tun_writer *w) {
  if (w->joined) return;
  w->joined = 1;
  atomic_store_explicit(&w->stopping, 1, memory_order_seq_cst);
  tun_writer_wake(w);
  pthread_join(w->thread, NULL);
}

static void tun_writer_free(tun_writer *w) {
  free(w->merge);
  free(w->ring);
  free(w);
}

static void tun_writer_finalize(napi_env env, void *data, void *hint) {
  tun_writer *w = data;
  tun_writer_join(w);
  tun_writer_free(w);
}

static tun_writer *tun_writer_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a TUN writer handle");
    return NULL;
  }
  return data;
}

/*
 * tunWriterStart(fd, slots, slotSize, vnet?, mergeUdp?) -> handle. slots is rounded up to a power
 * of two. With `vnet` (an IFF_VNET_HDR device) the thread merges consecutive TCP segments of one
 * flow (and with `mergeUdp`, for a device that took USO, UDP datagrams of one flow) into one GSO
 * write and puts a virtio header before everything else.
 */
napi_value fz_tun_writer_start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t slots, slot_size;
  bool vnet = false, merge_udp = false;
  if (argc < 3 || !fz_get_i32(env, argv[0], &fd) || !fz_get_u32(env, argv[1], &slots) || !fz_get_u32(env, argv[2], &slot_size)) {
    return NULL;
  }
  if (argc >= 4) napi_get_value_bool(env, argv[3], &vnet);
  if (argc >= 5) napi_get_value_bool(env, argv[4], &merge_udp);
  if (slots < 1 || slots > TUN_WRITER_MAX_SLOTS || slot_size < 1 || slot_size > 65535) {
    napi_throw_range_error(env, NULL, "slots must be 1..65536 and slotSize 1..65535");
    return NULL;
  }
  uint32_t rounded = 1;
  while (rounded < slots) rounded <<= 1;
  tun_writer *w = calloc(1, sizeof *w);
  if (w == NULL) return fz_throw_errno(env, ENOMEM, "TUN writer");
  w->fd = fd;
  w->slots = rounded;
  w->slot_size = slot_size;
  w->vnet = vnet ? 1 : 0;
  w->ring = malloc((size_t)rounded * tun_writer_stride(w));
  if (vnet) {
    w->merge = malloc(sizeof *w->merge);
    if (w->merge != NULL) {
      coalescer_reset(w->merge);
      w->merge->udp = merge_udp ? 1 : 0;
    }
  }
  if (w->ring == NULL || (vnet && w->merge == NULL)) {
    tun_writer_free(w);
    return fz_throw_errno(env, ENOMEM, "TUN writer ring");
  }
  int err = pthread_create(&w->thread, NULL, tun_writer_main, w);
  if (err != 0) {
    tun_writer_free(w);
    return fz_throw_errno(env, err, "Failed to start the TUN writer thread");
  }
  napi_value handle;
  if (napi_create_external(env, w, tun_writer_finalize, NULL, &handle) != napi_ok) {
    tun_writer_join(w);
    tun_writer_free(w);
    fz_throw_last_napi_error(env);
    return NULL;
  }
  return handle;
}

/* Copies one packet into the next free slot; 0 when queued, ENOBUFS (full) or EMSGSIZE. */
static int tun_writer_copy(tun_writer *w, uint32_t head, uint32_t tail, const uint8_t *data, size_t length) {
  if (length > w->slot_size) return EMSGSIZE;
  if (head - tail >= w->slots) return ENOBUFS;
  uint8_t *slot = w->ring + (size_t)(head & (w->slots - 1)) * tun_writer_stride(w);
  uint32_t length32 = (uint32_t)length;
  memcpy(slot, &length32, sizeof length32);
  memcpy(slot + TUN_WRITER_SLOT_HEADER, data, length);
  return 0;
}

static void tun_writer_publish(tun_writer *w, uint32_t head) {
  atomic_store_explicit(&w->head, head, memory_order_seq_cst);
  if (atomic_load_explicit(&w->sleeping, memory_order_seq_cst)) tun_writer_wake(w);
}

/* tunWriterPush(handle, packet) -> 0 when queued, else ENOBUFS (ring full), EMSGSIZE or EPIPE (stopped). */
napi_value fz_tun_writer_push(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *data;
  size_t length;
  tun_writer *w;
  if (argc < 2 || (w = tun_writer_of(env, argv[0])) == NULL || !fz_get_bytes(env, argv[1], &data, &length)) return NULL;
  if (w->joined) return fz_make_i32(env, EPIPE);
  uint32_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
  uint32_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
  int err = tun_writer_copy(w, head, tail, data, length);
  if (err == 0) tun_writer_publish(w, head + 1);
  return fz_make_i32(env, err);
}

/*
 * tunWriterPushBatch(handle, buffer, spans, count) -> packets queued. Same span convention as
 * tunWriteBatch: a refused packet's span becomes (errno, 0). One publish (and at most one wake)
 * per batch.
 */
napi_value fz_tun_writer_push_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_writer *w;
  uint8_t *buffer, *span_bytes;
  size_t buffer_length, span_length;
  uint32_t count;
  if (argc < 4 || (w = tun_writer_of(env, argv[0])) == NULL || !fz_get_bytes(env, argv[1], &buffer, &buffer_length) ||
      !fz_get_bytes(env, argv[2], &span_bytes, &span_length) || !fz_get_u32(env, argv[3], &count)) {
    return NULL;
  }
  if ((size_t)count * 8 > span_length) {
    napi_throw_range_error(env, NULL, "count exceeds spans");
    return NULL;
  }
  uint32_t *spans = (uint32_t *)span_bytes;
  uint32_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
  uint32_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
  int32_t queued = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t offset = spans[2 * i], length = spans[2 * i + 1];
    int err;
    if (w->joined) err = EPIPE;
    else if ((size_t)offset + length > buffer_length) err = EINVAL;
    else {
      err = tun_writer_copy(w, head, tail, buffer + offset, length);
      if (err == ENOBUFS) {
        tail = atomic_load_explicit(&w->tail, memory_order_acquire);
        err = tun_writer_copy(w, head, tail, buffer + offset, length);
      }
    }
    if (err == 0) {
      head++;
      queued++;
    } else {
      spans[2 * i] = (uint32_t)err;
      spans[2 * i + 1] = 0;
    }
  }
  if (queued) tun_writer_publish(w, head);
  return fz_make_i32(env, queued);
}

/* tunWriterStats(handle, out: Float64Array(6)): written, writtenBytes, errors, lastErrno, queued, coalescedWrites. */
napi_value fz_tun_writer_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_writer *w;
  uint8_t *out_bytes;
  size_t out_length;
  if (argc < 2 || (w = tun_writer_of(env, argv[0])) == NULL || !fz_get_bytes(env, argv[1], &out_bytes, &out_length)) return NULL;
  if (out_length < 6 * sizeof(double)) {
    napi_throw_range_error(env, NULL, "stats needs a Float64Array(6)");
    return NULL;
  }
  double *out = (double *)out_bytes;
  out[0] = (double)atomic_load_explicit(&w->written, memory_order_relaxed);
  out[1] = (double)atomic_load_explicit(&w->written_bytes, memory_order_relaxed);
  out[2] = (double)atomic_load_explicit(&w->errors, memory_order_relaxed);
  out[3] = (double)atomic_load_explicit(&w->last_errno, memory_order_relaxed);
  out[4] = (double)(atomic_load_explicit(&w->head, memory_order_relaxed) - atomic_load_explicit(&w->tail, memory_order_acquire));
  out[5] = (double)atomic_load_explicit(&w->coalesced_writes, memory_order_relaxed);
  return NULL;
}

/* tunWriterStop(handle): lets the thread write what is queued, then joins it. Idempotent. */
napi_value fz_tun_writer_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_writer *w;
  if (argc < 1 || (w = tun_writer_of(env, argv[0])) == NULL) return NULL;
  tun_writer_join(w);
  return NULL;
}

/*
 * offloadSplit(frame, out, stride, maxLength, lengths: Uint32Array) -> segments written
 * The TUN read path's splitting, on its own (tests): `frame` is a virtio header and a packet.
 * Returns -1 for a malformed frame and -2 when `out` or `lengths` cannot take every segment.
 */
napi_value fz_offload_split(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *frame, *out, *length_bytes;
  size_t frame_length, out_length, lengths_length;
  uint32_t stride, max_length;
  if (argc < 5 || !fz_get_bytes(env, argv[0], &frame, &frame_length) || !fz_get_bytes(env, argv[1], &out, &out_length) ||
      !fz_get_u32(env, argv[2], &stride) || !fz_get_u32(env, argv[3], &max_length) ||
      !fz_get_bytes(env, argv[4], &length_bytes, &lengths_length)) {
    return NULL;
  }
  if (stride == 0 || max_length > stride) {
    napi_throw_range_error(env, NULL, "offloadSplit: maxLength must fit the stride");
    return NULL;
  }
  uint32_t capacity = (uint32_t)(out_length / stride);
  if (capacity > lengths_length / 4) capacity = (uint32_t)(lengths_length / 4);
  uint32_t emitted, total;
  if (offload_split(frame, frame_length, 0, out, stride, max_length, capacity, (uint32_t *)length_bytes, &emitted, &total) != OFFLOAD_OK) {
    return fz_make_i32(env, -1);
  }
  return fz_make_i32(env, emitted < total ? -2 : (int32_t)emitted);
}

/*
 * offloadCoalesce(buffer, spans: Uint32Array, count, frame, udp?) -> packets merged into `frame`
 * The TUN writer's merging, on its own (tests): packets are (offset, length) spans in `buffer`;
 * the packets the writer would put in its first write are merged into `frame` (virtio header and
 * packet), whose length goes into spans[2 * count] (the array needs that one more pair).
 */
napi_value fz_offload_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *buffer, *span_bytes, *frame;
  size_t buffer_length, spans_length, frame_length;
  uint32_t count;
  if (argc < 4 || !fz_get_bytes(env, argv[0], &buffer, &buffer_length) || !fz_get_bytes(env, argv[1], &span_bytes, &spans_length) ||
      !fz_get_u32(env, argv[2], &count) || !fz_get_bytes(env, argv[3], &frame, &frame_length)) {
    return NULL;
  }
  uint32_t *spans = (uint32_t *)span_bytes;
  if (count == 0 || (size_t)(count + 1) * 8 > spans_length) {
    napi_throw_range_error(env, NULL, "offloadCoalesce: spans needs count + 1 pairs");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    if ((size_t)spans[2 * i] + spans[2 * i + 1] > buffer_length) {
      napi_throw_range_error(env, NULL, "offloadCoalesce: a span is outside the buffer");
      return NULL;
    }
  }
  bool udp = false;
  if (argc >= 5) napi_get_value_bool(env, argv[4], &udp);
  coalescer *c = malloc(sizeof *c);
  if (c == NULL) return fz_throw_errno(env, ENOMEM, "offloadCoalesce");
  coalescer_reset(c);
  c->udp = udp ? 1 : 0;
  uint32_t merged = 0;
  if (coalescer_start(c, buffer + spans[0], spans[1])) {
    merged = 1;
    while (merged < count && coalescer_append(c, buffer + spans[2 * merged], spans[2 * merged + 1])) merged++;
  }
  size_t length;
  if (merged == 0) {
    memset(c->frame, 0, VNET_HDR_SIZE);
    memcpy(c->frame + VNET_HDR_SIZE, buffer + spans[0], spans[1]);
    length = VNET_HDR_SIZE + spans[1];
    merged = 1;
  } else {
    length = coalescer_finish(c);
  }
  if (length > frame_length) {
    free(c);
    napi_throw_range_error(env, NULL, "offloadCoalesce: frame too small");
    return NULL;
  }
  memcpy(frame, c->frame, length);
  spans[2 * count] = (uint32_t)length;
  free(c);
  return fz_make_i32(env, (int32_t)merged);
}
