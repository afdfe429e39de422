#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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
