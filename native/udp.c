#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
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
 * udpOpen(family: 4 | 6, address: string, port, receiveBufferSize, sendBufferSize, mark, offloads)
 *   -> { fd, port, receiveBufferSize, sendBufferSize, bufferErrno, markErrno, gro, gso, tosErrno }
 * Non-blocking, close-on-exec, IP_PKTINFO / IPV6_RECVPKTINFO on, IPV6_V6ONLY on for family 6,
 * IP_RECVTOS / IPV6_RECVTCLASS on (the ECN bits of every datagram). With `offloads`, UDP_GRO is
 * asked for (gro: whether the kernel took it) and UDP_SEGMENT probed (gso: whether sends may
 * carry it). A mark of 0 leaves SO_MARK unset. Buffer, mark and TOS failures are reported, not
 * thrown.
 */
napi_value fz_udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family;
  uint32_t port, rcvbuf, sndbuf, mark;
  bool offloads = false;
  char address[INET6_ADDRSTRLEN + 1];
  size_t address_length;
  if (argc < 6 || !fz_get_i32(env, argv[0], &family) ||
      napi_get_value_string_utf8(env, argv[1], address, sizeof address, &address_length) != napi_ok ||
      !fz_get_u32(env, argv[2], &port) || !fz_get_u32(env, argv[3], &rcvbuf) ||
      !fz_get_u32(env, argv[4], &sndbuf) || !fz_get_u32(env, argv[5], &mark) ||
      (argc >= 7 && napi_get_value_bool(env, argv[6], &offloads) != napi_ok)) {
    if (argc < 6) napi_throw_type_error(env, NULL, "udpOpen(family, address, port, rcvbuf, sndbuf, mark, offloads)");
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

  int tos_errno = 0;
  if (family == 4 ? setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof one) != 0
                  : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof one) != 0) {
    tos_errno = errno;
  }
  int gro = 0, gso = 0;
  if (offloads) {
    gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    int segment = 0;
    socklen_t segment_length = sizeof segment;
    gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &segment, &segment_length) == 0;
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
  set_i32(env, result, "gro", gro);
  set_i32(env, result, "gso", gso);
  set_i32(env, result, "tosErrno", tos_errno);
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

#define SEND_CONTROL_SIZE (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint16_t)))

/* Whether datagram b can follow a in one GSO send: same destination, source and TOS. */
static int same_route(const uint8_t *a, const uint8_t *b) {
  return a[FZ_SEND_META_FAMILY] == b[FZ_SEND_META_FAMILY] && a[FZ_SEND_META_HAS_SRC] == b[FZ_SEND_META_HAS_SRC] &&
         a[FZ_SEND_META_TOS] == b[FZ_SEND_META_TOS] &&
         memcmp(a + FZ_SEND_META_DST_PORT, b + FZ_SEND_META_DST_PORT, 2) == 0 &&
         memcmp(a + FZ_SEND_META_DST_IP, b + FZ_SEND_META_DST_IP, 16) == 0 &&
         (!a[FZ_SEND_META_HAS_SRC] || memcmp(a + FZ_SEND_META_SRC_IP, b + FZ_SEND_META_SRC_IP, 16) == 0);
}

static void add_cmsg(struct msghdr *h, int level, int type, const void *data, size_t length) {
  struct cmsghdr *c = (struct cmsghdr *)((uint8_t *)h->msg_control + h->msg_controllen);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(length);
  memcpy(CMSG_DATA(c), data, length);
  h->msg_controllen += CMSG_SPACE(length);
}

/*
 * One message for `count` consecutive datagrams whose iovecs are at `iov` (the first one's meta is
 * `m`): destination, pktinfo source, TOS and, for more than one datagram, UDP_SEGMENT with the
 * first one's length (all but the last have it; the kernel splits there).
 */
static void prepare_message(struct msghdr *h, struct iovec *iov, uint32_t count, socket_address_t *dst, uint8_t *control,
                            const uint8_t *m) {
  uint16_t port = fz_get_u16le(m + FZ_SEND_META_DST_PORT);
  int is_v4 = m[FZ_SEND_META_FAMILY] == 4;
  memset(h, 0, sizeof *h);
  memset(dst, 0, sizeof *dst);
  h->msg_iov = iov;
  h->msg_iovlen = count;
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
  memset(control, 0, SEND_CONTROL_SIZE);
  h->msg_control = control;
  h->msg_controllen = 0;
  if (m[FZ_SEND_META_HAS_SRC]) {
    if (is_v4) {
      struct in_pktinfo pktinfo;
      memset(&pktinfo, 0, sizeof pktinfo);
      memcpy(&pktinfo.ipi_spec_dst, m + FZ_SEND_META_SRC_IP, 4);
      add_cmsg(h, IPPROTO_IP, IP_PKTINFO, &pktinfo, sizeof pktinfo);
    } else {
      struct in6_pktinfo pktinfo;
      memset(&pktinfo, 0, sizeof pktinfo);
      memcpy(&pktinfo.ipi6_addr, m + FZ_SEND_META_SRC_IP, 16);
      add_cmsg(h, IPPROTO_IPV6, IPV6_PKTINFO, &pktinfo, sizeof pktinfo);
    }
  }
  int tos = m[FZ_SEND_META_TOS];
  if (tos != 0) add_cmsg(h, is_v4 ? IPPROTO_IP : IPPROTO_IPV6, is_v4 ? IP_TOS : IPV6_TCLASS, &tos, sizeof tos);
  if (count > 1) {
    uint16_t segment = (uint16_t)iov[0].iov_len;
    add_cmsg(h, SOL_UDP, UDP_SEGMENT, &segment, sizeof segment);
  }
  if (h->msg_controllen == 0) h->msg_control = NULL;
}

static int gso_refusal(int err) {
  return err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT || err == EMSGSIZE;
}

static void put_errno(uint8_t *meta, uint32_t index, int err) {
  fz_put_i32(meta + (size_t)index * FZ_SEND_META_STRIDE + FZ_SEND_META_ERRNO, err);
}

/*
 * udpSendBatch(fd, buffer: Uint8Array, meta: Uint8Array, count, gso: boolean, status: Int32Array(2))
 *   -> datagrams sent.
 * One sendmmsg per up to FZ_MAX_BATCH datagrams. With `gso`, consecutive datagrams to the same
 * destination from the same source with the same TOS and length (the last of a run may be
 * shorter) go out as one UDP_SEGMENT send of up to FZ_GSO_MAX_SEGMENTS. A GSO send the kernel
 * refuses is retried datagram by datagram and its errno left in status[1] (the caller turns GSO
 * off); status[0] counts the GSO sends. Each entry's errno field is set (0 = sent); a failed
 * datagram (EAGAIN on a full send buffer, ENETUNREACH, ...) is skipped, not retried.
 */
napi_value fz_udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t *buffer, *meta, *status_bytes = NULL;
  size_t buffer_length, meta_length, status_length = 0;
  uint32_t count;
  bool gso = false;
  if (argc < 4 || !fz_get_i32(env, argv[0], &fd) || !fz_get_bytes(env, argv[1], &buffer, &buffer_length) ||
      !fz_get_bytes(env, argv[2], &meta, &meta_length) || !fz_get_u32(env, argv[3], &count)) {
    return NULL;
  }
  if (argc >= 6 && (napi_get_value_bool(env, argv[4], &gso) != napi_ok || !fz_get_bytes(env, argv[5], &status_bytes, &status_length))) {
    return NULL;
  }
  if ((size_t)count * FZ_SEND_META_STRIDE > meta_length) {
    napi_throw_range_error(env, NULL, "count exceeds meta");
    return NULL;
  }
  int32_t *status = status_length >= 2 * sizeof(int32_t) ? (int32_t *)status_bytes : NULL;
  if (status != NULL) status[0] = status[1] = 0;

  /* On the stack (about 60 KB), so worker threads with their own copy of the addon never share it. */
  struct mmsghdr msgs[FZ_MAX_BATCH];
  struct iovec iovs[FZ_MAX_BATCH];
  socket_address_t addresses[FZ_MAX_BATCH];
  uint8_t controls[FZ_MAX_BATCH][SEND_CONTROL_SIZE] __attribute__((aligned(8)));
  uint32_t indices[FZ_MAX_BATCH];   /* datagram index of each iovec */
  uint32_t first_iov[FZ_MAX_BATCH]; /* first iovec of each message */

  int32_t sent = 0;
  uint32_t next = 0;
  while (next < count) {
    /* Valid datagrams of this round, in order. */
    uint32_t n = 0;
    while (next < count && n < FZ_MAX_BATCH) {
      uint8_t *m = meta + (size_t)next * FZ_SEND_META_STRIDE;
      uint32_t offset = fz_get_u32le(m + FZ_SEND_META_OFFSET);
      uint32_t length = fz_get_u32le(m + FZ_SEND_META_LENGTH);
      uint8_t family = m[FZ_SEND_META_FAMILY];
      if ((size_t)offset + length > buffer_length || (family != 4 && family != 6)) {
        put_errno(meta, next, EINVAL);
        next++;
        continue;
      }
      iovs[n].iov_base = buffer + offset;
      iovs[n].iov_len = length;
      indices[n] = next;
      n++;
      next++;
    }
    /* Messages: runs of datagrams GSO can carry together, or one each. */
    uint32_t messages = 0;
    for (uint32_t i = 0; i < n;) {
      uint32_t run = 1;
      size_t bytes = iovs[i].iov_len;
      const uint8_t *head = meta + (size_t)indices[i] * FZ_SEND_META_STRIDE;
      if (gso) {
        while (i + run < n && run < FZ_GSO_MAX_SEGMENTS && bytes + iovs[i + run].iov_len <= FZ_GSO_MAX_BYTES &&
               iovs[i + run].iov_len <= iovs[i].iov_len && iovs[i + run - 1].iov_len == iovs[i].iov_len &&
               same_route(head, meta + (size_t)indices[i + run] * FZ_SEND_META_STRIDE)) {
          bytes += iovs[i + run].iov_len;
          run++;
        }
      }
      prepare_message(&msgs[messages].msg_hdr, &iovs[i], run, &addresses[messages], controls[messages], head);
      first_iov[messages] = i;
      messages++;
      i += run;
    }
    uint32_t done = 0;
    while (done < messages) {
      int r = sendmmsg(fd, msgs + done, messages - done, MSG_DONTWAIT);
      if (r < 0 && errno == EINTR) continue;
      uint32_t accepted = r < 0 ? 0 : (uint32_t)r;
      for (uint32_t k = done; k < done + accepted; k++) {
        uint32_t iovlen = (uint32_t)msgs[k].msg_hdr.msg_iovlen;
        for (uint32_t j = 0; j < iovlen; j++) put_errno(meta, indices[first_iov[k] + j], 0);
        sent += (int32_t)iovlen;
        if (iovlen > 1 && status != NULL) status[0]++;
      }
      done += accepted;
      if (r >= 0) continue;
      /* Message `done` failed. */
      int err = errno;
      struct msghdr *h = &msgs[done].msg_hdr;
      uint32_t iovlen = (uint32_t)h->msg_iovlen;
      if (iovlen > 1 && gso_refusal(err)) {
        if (status != NULL) status[1] = err;
        gso = false;
        for (uint32_t j = 0; j < iovlen; j++) {
          struct msghdr single;
          struct iovec *iov = &iovs[first_iov[done] + j];
          uint8_t control[SEND_CONTROL_SIZE] __attribute__((aligned(8)));
          socket_address_t dst;
          prepare_message(&single, iov, 1, &dst, control, meta + (size_t)indices[first_iov[done] + j] * FZ_SEND_META_STRIDE);
          ssize_t w;
          do w = sendmsg(fd, &single, MSG_DONTWAIT);
          while (w < 0 && errno == EINTR);
          put_errno(meta, indices[first_iov[done] + j], w < 0 ? errno : 0);
          if (w >= 0) sent++;
        }
      } else {
        for (uint32_t j = 0; j < iovlen; j++) put_errno(meta, indices[first_iov[done] + j], err);
      }
      done++;
    }
  }
  return fz_make_i32(env, sent);
}
