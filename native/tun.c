#define _GNU_SOURCE
#include "common.h"

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
#include <unistd.h>

#define TUN_PATH "/dev/net/tun"
#define TUN_MAX_QUEUES 64

static int ensure_tun_device_node(void) {
  struct stat st;
  if (stat(TUN_PATH, &st) == 0) return 0;
  if (mkdir("/dev/net", 0751) != 0 && errno != EEXIST) return errno;
  if (mknod(TUN_PATH, S_IFCHR | 0666, makedev(10, 200)) != 0 && errno != EEXIST) return errno;
  return 0;
}

/* tunOpen(name: string, queues: number) -> { name: string, fds: number[] } */
napi_value fz_tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "tunOpen(name, queues)");
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
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
      err = errno;
      close(fd);
      for (uint32_t j = 0; j < i; j++) close(fds[j]);
      return fz_throw_errno(env, err, "Failed to set flags on TUN device");
    }
    fds[i] = fd;
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
  return result;
}

/* tunWrite(fd, packet: Uint8Array) -> 0 or errno */
napi_value fz_tun_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *data;
  size_t length;
  if (argc < 2 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &data, &length)) return NULL;
  for (;;) {
    if (write(fd, data, length) >= 0) return fz_make_i32(env, 0);
    if (errno != EINTR) return fz_make_i32(env, errno);
  }
}

/*
 * tunWriteBatch(fd, buffer: Uint8Array, spans: Uint32Array, count) -> packets written.
 * spans holds (offset, length) pairs into buffer. A TUN fd takes one packet per write(), so a
 * batch is one N-API call and one syscall per packet. Failed packets (EAGAIN when the queue is
 * full, EIO while the link is down) are skipped: the caller counts count - written as drops.
 * A failed packet's span is overwritten with (errno, 0).
 */
napi_value fz_tun_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *buffer, *span_bytes;
  size_t buffer_length, span_length;
  uint32_t count;
  if (argc < 4 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &buffer, &buffer_length) ||
      !fz_get_bytes(env, argv[2], &span_bytes, &span_length) || !fz_get_u32(env, argv[3], &count)) {
    return NULL;
  }
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
      do r = write(fd, buffer + offset, length);
      while (r < 0 && errno == EINTR);
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
  pthread_t thread;
  int joined;
} tun_writer;

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
    uint64_t packets = 0, bytes = 0, errors = 0;
    int last_errno = 0;
    while (tail != head) {
      uint8_t *slot = w->ring + (size_t)(tail & mask) * stride;
      uint32_t length;
      memcpy(&length, slot, sizeof length);
      ssize_t r;
      do r = write(w->fd, slot + TUN_WRITER_SLOT_HEADER, length);
      while (r < 0 && errno == EINTR);
      if (r >= 0) {
        packets++;
        bytes += length;
      } else {
        errors++;
        last_errno = errno;
      }
      tail++;
      /* Free each slot as soon as it is written so the producer sees space early. */
      atomic_store_explicit(&w->tail, tail, memory_order_release);
    }
    if (packets) {
      atomic_fetch_add_explicit(&w->written, packets, memory_order_relaxed);
      atomic_fetch_add_explicit(&w->written_bytes, bytes, memory_order_relaxed);
    }
    if (errors) {
      atomic_fetch_add_explicit(&w->errors, errors, memory_order_relaxed);
      atomic_store_explicit(&w->last_errno, last_errno, memory_order_relaxed);
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

static void tun_writer_finalize(napi_env env, void *data, void *hint) {
  tun_writer *w = data;
  tun_writer_join(w);
  free(w->ring);
  free(w);
}

static tun_writer *tun_writer_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a TUN writer handle");
    return NULL;
  }
  return data;
}

/* tunWriterStart(fd, slots, slotSize) -> handle. slots is rounded up to a power of two. */
napi_value fz_tun_writer_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t slots, slot_size;
  if (argc < 3 || !fz_get_i32(env, argv[0], &fd) || !fz_get_u32(env, argv[1], &slots) || !fz_get_u32(env, argv[2], &slot_size)) {
    return NULL;
  }
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
  w->ring = malloc((size_t)rounded * tun_writer_stride(w));
  if (w->ring == NULL) {
    free(w);
    return fz_throw_errno(env, ENOMEM, "TUN writer ring");
  }
  int err = pthread_create(&w->thread, NULL, tun_writer_main, w);
  if (err != 0) {
    free(w->ring);
    free(w);
    return fz_throw_errno(env, err, "Failed to start the TUN writer thread");
  }
  napi_value handle;
  if (napi_create_external(env, w, tun_writer_finalize, NULL, &handle) != napi_ok) {
    tun_writer_join(w);
    free(w->ring);
    free(w);
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

/* tunWriterStats(handle, out: Float64Array(5)): written, writtenBytes, errors, lastErrno, queued. */
napi_value fz_tun_writer_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_writer *w;
  uint8_t *out_bytes;
  size_t out_length;
  if (argc < 2 || (w = tun_writer_of(env, argv[0])) == NULL || !fz_get_bytes(env, argv[1], &out_bytes, &out_length)) return NULL;
  if (out_length < 5 * sizeof(double)) {
    napi_throw_range_error(env, NULL, "stats needs a Float64Array(5)");
    return NULL;
  }
  double *out = (double *)out_bytes;
  out[0] = (double)atomic_load_explicit(&w->written, memory_order_relaxed);
  out[1] = (double)atomic_load_explicit(&w->written_bytes, memory_order_relaxed);
  out[2] = (double)atomic_load_explicit(&w->errors, memory_order_relaxed);
  out[3] = (double)atomic_load_explicit(&w->last_errno, memory_order_relaxed);
  out[4] = (double)(atomic_load_explicit(&w->head, memory_order_relaxed) - atomic_load_explicit(&w->tail, memory_order_acquire));
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
