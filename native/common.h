#ifndef FZ_NATIVE_COMMON_H
#define FZ_NATIVE_COMMON_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_CALL(env, call)                                                       \
  do {                                                                           \
    if ((call) != napi_ok) {                                                     \
      fz_throw_last_napi_error(env);                                             \
      return NULL;                                                               \
    }                                                                            \
  } while (0)

#define FZ_MAX_ARGS 8

/* Byte layout of one received UDP datagram's metadata (see README.md). */
#define FZ_RECV_META_STRIDE 64
#define FZ_RECV_META_LENGTH 0
#define FZ_RECV_META_FAMILY 4
#define FZ_RECV_META_FLAGS 5
#define FZ_RECV_META_SRC_PORT 6
#define FZ_RECV_META_SRC_IP 8
#define FZ_RECV_META_DST_IP 24
#define FZ_RECV_META_IFINDEX 40
#define FZ_RECV_META_OFFSET 44
#define FZ_RECV_META_TOS 48
#define FZ_RECV_META_SEGMENT_SIZE 50
#define FZ_RECV_FLAG_PKTINFO 1
#define FZ_RECV_FLAG_TRUNCATED 2
#define FZ_RECV_FLAG_TOS 4
#define FZ_RECV_FLAG_COALESCED 8

/* Byte layout of one datagram to send. */
#define FZ_SEND_META_STRIDE 64
#define FZ_SEND_META_OFFSET 0
#define FZ_SEND_META_LENGTH 4
#define FZ_SEND_META_DST_PORT 8
#define FZ_SEND_META_FAMILY 10
#define FZ_SEND_META_HAS_SRC 11
#define FZ_SEND_META_DST_IP 12
#define FZ_SEND_META_SRC_IP 28
#define FZ_SEND_META_ERRNO 44
#define FZ_SEND_META_TOS 48

/* UDP segmentation offload: at most this many datagrams per GSO send (the kernel's UDP_MAX_SEGMENTS) and bytes per send. */
#define FZ_GSO_MAX_SEGMENTS 64
#define FZ_GSO_MAX_BYTES 65000
/* A GRO-coalesced receive holds at most this many datagrams (the kernel's UDP_GRO_CNT_MAX) in 64 KiB. */
#define FZ_GRO_MAX_SEGMENTS 64
#define FZ_GRO_BUFFER 65536

#define FZ_MAX_BATCH 256

/* Batched transport AEAD (aead.c): one job is FZ_AEAD_JOB_WORDS u32 words. */
#define FZ_AEAD_JOB_WORDS 8
#define FZ_AEAD_JOB_KEY 0
#define FZ_AEAD_JOB_COUNTER_LOW 1
#define FZ_AEAD_JOB_COUNTER_HIGH 2
#define FZ_AEAD_JOB_SOURCE 3
#define FZ_AEAD_JOB_LENGTH 4
#define FZ_AEAD_JOB_TARGET 5
#define FZ_AEAD_JOB_STATUS 6
#define FZ_AEAD_OK 0
#define FZ_AEAD_UNAUTHENTIC 1
#define FZ_AEAD_BAD_KEY 2
#define FZ_AEAD_BAD_RANGE 3
#define FZ_AEAD_FAILED 4
#define FZ_AEAD_KEY_SIZE 32
#define FZ_AEAD_NONCE_SIZE 12
#define FZ_AEAD_TAG_SIZE 16
#define FZ_AEAD_MAX_LENGTH 65535

void fz_throw_last_napi_error(napi_env env);
napi_value fz_throw_errno(napi_env env, int err, const char *what);
int fz_get_i32(napi_env env, napi_value value, int32_t *out);
int fz_get_u32(napi_env env, napi_value value, uint32_t *out);
int fz_get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length);
napi_value fz_make_i32(napi_env env, int32_t value);

static inline void fz_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void fz_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void fz_put_i32(uint8_t *p, int32_t v) { fz_put_u32(p, (uint32_t)v); }
static inline uint16_t fz_get_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t fz_get_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

napi_value fz_tun_open(napi_env env, napi_callback_info info);
napi_value fz_tun_write(napi_env env, napi_callback_info info);
napi_value fz_tun_write_batch(napi_env env, napi_callback_info info);
napi_value fz_tun_writer_start(napi_env env, napi_callback_info info);
napi_value fz_tun_writer_push(napi_env env, napi_callback_info info);
napi_value fz_tun_writer_push_batch(napi_env env, napi_callback_info info);
napi_value fz_tun_writer_stats(napi_env env, napi_callback_info info);
napi_value fz_tun_writer_stop(napi_env env, napi_callback_info info);
napi_value fz_udp_open(napi_env env, napi_callback_info info);
napi_value fz_udp_send_batch(napi_env env, napi_callback_info info);
napi_value fz_set_mark(napi_env env, napi_callback_info info);
napi_value fz_tcp_socket(napi_env env, napi_callback_info info);
napi_value fz_close_fd(napi_env env, napi_callback_info info);
napi_value fz_poller_start(napi_env env, napi_callback_info info);
napi_value fz_poller_stop(napi_env env, napi_callback_info info);
napi_value fz_aead_keyring_create(napi_env env, napi_callback_info info);
napi_value fz_aead_key_add(napi_env env, napi_callback_info info);
napi_value fz_aead_key_remove(napi_env env, napi_callback_info info);
napi_value fz_aead_key_count(napi_env env, napi_callback_info info);
napi_value fz_aead_run(napi_env env, napi_callback_info info);
napi_value fz_offload_split(napi_env env, napi_callback_info info);
napi_value fz_offload_coalesce(napi_env env, napi_callback_info info);

#endif
