#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_i32(napi_env env, napi_value object, const char *key, int32_t value) {
  napi_set_named_property(env, object, key, fz_make_i32(env, value));
}

static int set_mark(int fd, uint32_t mark) {
  return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0 ? 0 : errno;
}

/*
 * udpOpen(family: 4 | 6, address: string, port, receiveBufferSize, sendBufferSize, mark)
 *   -> { fd, port, receiveBufferSize, sendBufferSize, bufferErrno, markErrno }
 * Non-blocking, close-on-exec, IP_PKTINFO / IPV6_RECVPKTINFO on, IPV6_V6ONLY on for family 6.
 * A mark of 0 leaves SO_MARK unset. Buffer and mark failures are reported, not thrown.
 */
napi_value fz_udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family;
  uint32_t port, rcvbuf, sndbuf, mark;
  char address[INET6_ADDRSTRLEN + 1];
  size_t address_length;
  if (argc < 6 || !fz_get_i32(env, argv[0], &family) ||
      napi_get_value_string_utf8(env, argv[1], address, sizeof address, &address_length) != napi_ok ||
      !fz_get_u32(env, argv[2], &port) || !fz_get_u32(env, argv[3], &rcvbuf) ||
      !fz_get_u32(env, argv[4], &sndbuf) || !fz_get_u32(env, argv[5], &mark)) {
    if (argc < 6) napi_throw_type_error(env, NULL, "udpOpen(family, address, port, rcvbuf, sndbuf, mark)");
    return NULL;
  }
  if ((family != 4 && family != 6) || port > 65535) {
    napi_throw_range_error(env, NULL, "udpOpen: bad family or port");
    return NULL;
  }

  struct sockaddr_storage bind_address;
  socklen_t bind_length;
  memset(&bind_address, 0, sizeof bind_address);
  if (family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&bind_address;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &sin->sin_addr) != 1) {
      napi_throw_type_error(env, NULL, "udpOpen: bad IPv4 address");
      return NULL;
    }
    bind_length = sizeof *sin;
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&bind_address;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, address, &sin6->sin6_addr) != 1) {
      napi_throw_type_error(env, NULL, "udpOpen: bad IPv6 address");
      return NULL;
    }
    bind_length = sizeof *sin6;
  }

  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return fz_throw_errno(env, errno, "socket");
  int one = 1, err;
  if (family == 4) {
    err = setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
  } else {
    err = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (err == 0) err = setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
  }
  if (err != 0) {
    err = errno;
    close(fd);
    return fz_throw_errno(env, err, "setsockopt(PKTINFO)");
  }

  int buffer_errno = 0, mark_errno = 0;
  int requested_rcv = (int)rcvbuf, requested_snd = (int)sndbuf;
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &requested_rcv, sizeof requested_rcv) != 0) buffer_errno = errno;
  if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &requested_snd, sizeof requested_snd) != 0) buffer_errno = errno;
  if (mark != 0) mark_errno = set_mark(fd, mark);

  if (bind(fd, (struct sockaddr *)&bind_address, bind_length) != 0) {
    err = errno;
    close(fd);
    return fz_throw_errno(env, err, "bind");
  }

  struct sockaddr_storage local;
  socklen_t local_length = sizeof local;
  getsockname(fd, (struct sockaddr *)&local, &local_length);
  uint16_t bound_port = family == 4 ? ntohs(((struct sockaddr_in *)&local)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
  int actual_rcv = 0, actual_snd = 0;
  socklen_t int_length = sizeof actual_rcv;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &actual_rcv, &int_length);
  int_length = sizeof actual_snd;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &actual_snd, &int_length);

  napi_value result;
  FZ_CALL(env, napi_create_object(env, &result));
  set_i32(env, result, "fd", fd);
  set_i32(env, result, "port", bound_port);
  set_i32(env, result, "receiveBufferSize", actual_rcv);
  set_i32(env, result, "sendBufferSize", actual_snd);
  set_i32(env, result, "bufferErrno", buffer_errno);
  set_i32(env, result, "markErrno", mark_errno);
  return result;
}

/*
 * tcpSocket(family: 4 | 6, mark) -> { fd, markErrno }
 * An unconnected non-blocking TCP socket with SO_MARK set (if permitted), for `net.Socket({ fd })`
 * so that connections Node makes (portal, DNS upstreams) carry the mark from their first SYN.
 */
napi_value fz_tcp_socket(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family;
  uint32_t mark;
  if (argc < 2 || !fz_get_i32(env, argv[0], &family) || !fz_get_u32(env, argv[1], &mark)) return NULL;
  if (family != 4 && family != 6) {
    napi_throw_range_error(env, NULL, "tcpSocket: bad family");
    return NULL;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return fz_throw_errno(env, errno, "socket");
  int mark_errno = mark != 0 ? set_mark(fd, mark) : 0;
  napi_value result;
  FZ_CALL(env, napi_create_object(env, &result));
  set_i32(env, result, "fd", fd);
  set_i32(env, result, "markErrno", mark_errno);
  return result;
}

/* setMark(fd, mark) -> 0 or errno */
napi_value fz_set_mark(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t mark;
  if (argc < 2 || !fz_get_i32(env, argv[0], &fd) || !fz_get_u32(env, argv[1], &mark)) return NULL;
  return fz_make_i32(env, set_mark(fd, mark));
}

typedef union {
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} socket_address_t;

#define SEND_CONTROL_SIZE CMSG_SPACE(sizeof(struct in6_pktinfo))

static socklen_t prepare_message(struct msghdr *h, struct iovec *iov, socket_address_t *dst, uint8_t *control,
                                 uint8_t *buffer, const uint8_t *m) {
  uint32_t offset = fz_get_u32le(m + FZ_SEND_META_OFFSET);
  uint32_t length = fz_get_u32le(m + FZ_SEND_META_LENGTH);
  uint16_t port = fz_get_u16le(m + FZ_SEND_META_DST_PORT);
  int is_v4 = m[FZ_SEND_META_FAMILY] == 4;
  iov->iov_base = buffer + offset;
  iov->iov_len = length;
  memset(h, 0, sizeof *h);
  memset(dst, 0, sizeof *dst);
  h->msg_iov = iov;
  h->msg_iovlen = 1;
  h->msg_name = dst;
  if (is_v4) {
    dst->v4.sin_family = AF_INET;
    dst->v4.sin_port = htons(port);
    memcpy(&dst->v4.sin_addr, m + FZ_SEND_META_DST_IP, 4);
    h->msg_namelen = sizeof dst->v4;
  } else {
    dst->v6.sin6_family = AF_INET6;
    dst->v6.sin6_port = htons(port);
    memcpy(&dst->v6.sin6_addr, m + FZ_SEND_META_DST_IP, 16);
    h->msg_namelen = sizeof dst->v6;
  }
  if (!m[FZ_SEND_META_HAS_SRC]) return 0;
  memset(control, 0, SEND_CONTROL_SIZE);
  h->msg_control = control;
  struct cmsghdr *c = (struct cmsghdr *)control;
  if (is_v4) {
    struct in_pktinfo info;
    memset(&info, 0, sizeof info);
    memcpy(&info.ipi_spec_dst, m + FZ_SEND_META_SRC_IP, 4);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof info);
    memcpy(CMSG_DATA(c), &info, sizeof info);
    h->msg_controllen = CMSG_SPACE(sizeof info);
  } else {
    struct in6_pktinfo info;
    memset(&info, 0, sizeof info);
    memcpy(&info.ipi6_addr, m + FZ_SEND_META_SRC_IP, 16);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof info);
    memcpy(CMSG_DATA(c), &info, sizeof info);
    h->msg_controllen = CMSG_SPACE(sizeof info);
  }
  return h->msg_controllen;
}

/*
 * udpSendBatch(fd, buffer: Uint8Array, meta: Uint8Array, count) -> datagrams sent.
 * One sendmmsg per up to FZ_MAX_BATCH datagrams. Each entry's errno field is set (0 = sent);
 * a failed datagram (EAGAIN on a full send buffer, ENETUNREACH, ...) is skipped, not retried.
 */
napi_value fz_udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *buffer, *meta;
  size_t buffer_length, meta_length;
  uint32_t count;
  if (argc < 4 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &buffer, &buffer_length) ||
      !fz_get_bytes(env, argv[2], &meta, &meta_length) || !fz_get_u32(env, argv[3], &count)) {
    return NULL;
  }
  if ((size_t)count * FZ_SEND_META_STRIDE > meta_length) {
    napi_throw_range_error(env, NULL, "count exceeds meta");
    return NULL;
  }

  /* On the stack (about 40 KB), so worker threads with their own copy of the addon never share it. */
  struct mmsghdr msgs[FZ_MAX_BATCH];
  struct iovec iovs[FZ_MAX_BATCH];
  socket_address_t addresses[FZ_MAX_BATCH];
  uint8_t controls[FZ_MAX_BATCH][SEND_CONTROL_SIZE] __attribute__((aligned(8)));
  uint32_t indices[FZ_MAX_BATCH];

  int32_t sent = 0;
  uint32_t next = 0;
  while (next < count) {
    uint32_t batch = 0;
    while (next < count && batch < FZ_MAX_BATCH) {
      uint8_t *m = meta + (size_t)next * FZ_SEND_META_STRIDE;
      uint32_t offset = fz_get_u32le(m + FZ_SEND_META_OFFSET);
      uint32_t length = fz_get_u32le(m + FZ_SEND_META_LENGTH);
      uint8_t family = m[FZ_SEND_META_FAMILY];
      if ((size_t)offset + length > buffer_length || (family != 4 && family != 6)) {
        fz_put_i32(m + FZ_SEND_META_ERRNO, EINVAL);
        next++;
        continue;
      }
      prepare_message(&msgs[batch].msg_hdr, &iovs[batch], &addresses[batch], controls[batch], buffer, m);
      indices[batch] = next;
      batch++;
      next++;
    }
    uint32_t done = 0;
    while (done < batch) {
      int r = sendmmsg(fd, msgs + done, batch - done, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        fz_put_i32(meta + (size_t)indices[done] * FZ_SEND_META_STRIDE + FZ_SEND_META_ERRNO, errno);
        done++;
        continue;
      }
      for (int i = 0; i < r; i++) {
        fz_put_i32(meta + (size_t)indices[done + i] * FZ_SEND_META_STRIDE + FZ_SEND_META_ERRNO, 0);
      }
      sent += r;
      done += (uint32_t)r;
    }
  }
  return fz_make_i32(env, sent);
}
