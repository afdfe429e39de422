#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void fz_throw_last_napi_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "N-API call failed");
}

napi_value fz_throw_errno(napi_env env, int err, const char *what) {
  char message[256];
  const char *name = strerrorname_np(err);
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_value code, msg, error, errno_value;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

int fz_get_i32(napi_env env, napi_value value, int32_t *out) {
  if (napi_get_value_int32(env, value, out) == napi_ok) return 1;
  napi_throw_type_error(env, NULL, "expected a number");
  return 0;
}

int fz_get_u32(napi_env env, napi_value value, uint32_t *out) {
  if (napi_get_value_uint32(env, value, out) == napi_ok) return 1;
  napi_throw_type_error(env, NULL, "expected an unsigned number");
  return 0;
}

/* Accepts any TypedArray (Uint8Array, Buffer, Uint32Array, ...) and returns its bytes. */
int fz_get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) {
    napi_throw_type_error(env, NULL, "expected a TypedArray");
    return 0;
  }
  napi_typedarray_type type;
  size_t count, byte_offset;
  void *base;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, value, &type, &count, &base, &arraybuffer, &byte_offset) != napi_ok) {
    fz_throw_last_napi_error(env);
    return 0;
  }
  size_t element = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: element = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
    default: element = 1;
  }
  *data = (uint8_t *)base;
  *length = count * element;
  return 1;
}

napi_value fz_make_i32(napi_env env, int32_t value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}


napi_value fz_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !fz_get_i32(env, argv[0], &fd)) return NULL;
  if (close(fd) != 0 && errno != EINTR) return fz_throw_errno(env, errno, "close");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    {"tunOpen", NULL, fz_tun_open, NULL, NULL, NULL, napi_default, NULL},
    {"tunWrite", NULL, fz_tun_write, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriteBatch", NULL, fz_tun_write_batch, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriterStart", NULL, fz_tun_writer_start, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriterPush", NULL, fz_tun_writer_push, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriterPushBatch", NULL, fz_tun_writer_push_batch, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriterStats", NULL, fz_tun_writer_stats, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriterStop", NULL, fz_tun_writer_stop, NULL, NULL, NULL, napi_default, NULL},
    {"udpOpen", NULL, fz_udp_open, NULL, NULL, NULL, napi_default, NULL},
    {"udpSendBatch", NULL, fz_udp_send_batch, NULL, NULL, NULL, napi_default, NULL},
    {"setMark", NULL, fz_set_mark, NULL, NULL, NULL, napi_default, NULL},
    {"tcpSocket", NULL, fz_tcp_socket, NULL, NULL, NULL, napi_default, NULL},
    {"closeFd", NULL, fz_close_fd, NULL, NULL, NULL, napi_default, NULL},
    {"pollerStart", NULL, fz_poller_start, NULL, NULL, NULL, napi_default, NULL},
    {"pollerStop", NULL, fz_poller_stop, NULL, NULL, NULL, napi_default, NULL},
    {"aeadKeyringCreate", NULL, fz_aead_keyring_create, NULL, NULL, NULL, napi_default, NULL},
    {"aeadKeyAdd", NULL, fz_aead_key_add, NULL, NULL, NULL, napi_default, NULL},
    {"aeadKeyRemove", NULL, fz_aead_key_remove, NULL, NULL, NULL, napi_default, NULL},
    {"aeadKeyCount", NULL, fz_aead_key_count, NULL, NULL, NULL, napi_default, NULL},
    {"aeadRun", NULL, fz_aead_run, NULL, NULL, NULL, napi_default, NULL},
    {"offloadSplit", NULL, fz_offload_split, NULL, NULL, NULL, napi_default, NULL},
    {"offloadCoalesce", NULL, fz_offload_coalesce, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) {
    fz_throw_last_napi_error(env);
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
