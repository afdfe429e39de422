#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/*
 * WireGuard's transport AEAD (ChaCha20-Poly1305, 12-byte nonce = 4 zero bytes || counter LE64)
 * in batches, with OpenSSL's EVP from the libcrypto Node itself exports (see README.md for why
 * that one). A keyring holds the raw transport keys inline, one cache line each, and two cipher
 * contexts (sealing, opening) that each job loads with its key and nonce: ChaCha20's key setup is
 * a copy, so a job on a cold key costs one cache miss instead of a context and its provider state
 * (several lines each). A key is added when a session is installed and removed (wiped) when the
 * session goes; a context that last held a removed key is wiped as well. JavaScript keeps the
 * protocol: it picks the key, the counter and the buffers, and passes a batch of jobs in one call.
 *
 * Key ids carry a generation byte, so a job naming a removed key (or a slot reused since) fails
 * cleanly with FZ_AEAD_BAD_KEY instead of using another session's key.
 */

#define KEY_INDEX_BITS 24
#define KEY_INDEX_MASK ((1u << KEY_INDEX_BITS) - 1)
#define KEYRING_MAX_KEYS (1u << KEY_INDEX_BITS)
#define CACHE_LINE 64

typedef struct {
  _Alignas(CACHE_LINE) uint8_t raw[FZ_AEAD_KEY_SIZE];
  uint8_t live;
  uint8_t generation;
  uint8_t seal;
} aead_key;

_Static_assert(sizeof(aead_key) == CACHE_LINE, "a key is one cache line");

typedef struct {
  aead_key *keys;
  uint32_t capacity;
  uint32_t live;
  uint32_t *free_slots;
  uint32_t free_count;
  /* Index 0 opens, 1 seals; each remembers the slot whose key it holds (UINT32_MAX: none). */
  EVP_CIPHER_CTX *ctx[2];
  uint32_t ctx_slot[2];
} aead_keyring;

static const uint8_t zero_key[FZ_AEAD_KEY_SIZE] = {0};
static const uint8_t zero_nonce[FZ_AEAD_NONCE_SIZE] = {0};

static void keyring_free(aead_keyring *ring) {
  if (ring->keys != NULL) OPENSSL_cleanse(ring->keys, (size_t)ring->capacity * sizeof *ring->keys);
  free(ring->keys);
  free(ring->free_slots);
  EVP_CIPHER_CTX_free(ring->ctx[0]);
  EVP_CIPHER_CTX_free(ring->ctx[1]);
  free(ring);
}

static void keyring_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  keyring_free(data);
}

static aead_keyring *keyring_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected an AEAD keyring");
    return NULL;
  }
  return data;
}

static aead_key *key_of(aead_keyring *ring, uint32_t id) {
  uint32_t index = id & KEY_INDEX_MASK;
  if (index >= ring->capacity) return NULL;
  aead_key *key = &ring->keys[index];
  if (!key->live || key->generation != (uint8_t)(id >> KEY_INDEX_BITS)) return NULL;
  return key;
}

static int keyring_grow(aead_keyring *ring) {
  uint32_t capacity = ring->capacity == 0 ? 64 : ring->capacity * 2;
  if (capacity > KEYRING_MAX_KEYS) capacity = KEYRING_MAX_KEYS;
  if (capacity == ring->capacity) return 0;
  aead_key *keys = aligned_alloc(CACHE_LINE, (size_t)capacity * sizeof *keys);
  if (keys == NULL) return 0;
  uint32_t *free_slots = realloc(ring->free_slots, (size_t)capacity * sizeof *free_slots);
  if (free_slots == NULL) {
    free(keys);
    return 0;
  }
  ring->free_slots = free_slots;
  if (ring->keys != NULL) {
    memcpy(keys, ring->keys, (size_t)ring->capacity * sizeof *keys);
    OPENSSL_cleanse(ring->keys, (size_t)ring->capacity * sizeof *keys);
    free(ring->keys);
  }
  memset(keys + ring->capacity, 0, (size_t)(capacity - ring->capacity) * sizeof *keys);
  ring->keys = keys;
  /* Lowest index on top of the stack, so slots are reused low first. */
  for (uint32_t i = capacity; i > ring->capacity; i--) ring->free_slots[ring->free_count++] = i - 1;
  ring->capacity = capacity;
  return 1;
}

/* Overwrites the key a context holds (after that key was removed). */
static void context_forget(aead_keyring *ring, int seal) {
  EVP_CipherInit_ex(ring->ctx[seal], NULL, NULL, zero_key, zero_nonce, seal);
  ring->ctx_slot[seal] = UINT32_MAX;
}

/* aeadKeyringCreate() -> handle */
napi_value fz_aead_keyring_create(napi_env env, napi_callback_info info) {
  (void)info;
  aead_keyring *ring = calloc(1, sizeof *ring);
  if (ring == NULL) return fz_throw_errno(env, ENOMEM, "AEAD keyring");
  for (int seal = 0; seal < 2; seal++) {
    ring->ctx[seal] = EVP_CIPHER_CTX_new();
    ring->ctx_slot[seal] = UINT32_MAX;
    if (ring->ctx[seal] == NULL || EVP_CipherInit_ex(ring->ctx[seal], EVP_chacha20_poly1305(), NULL, zero_key, zero_nonce, seal) != 1) {
      keyring_free(ring);
      napi_throw_error(env, "EOPENSSL", "EVP ChaCha20-Poly1305 initialisation failed");
      return NULL;
    }
  }
  napi_value handle;
  if (napi_create_external(env, ring, keyring_finalize, NULL, &handle) != napi_ok) {
    keyring_free(ring);
    fz_throw_last_napi_error(env);
    return NULL;
  }
  return handle;
}

/*
 * aeadKeyAdd(ring, key: Uint8Array(32), seal: boolean) -> id
 * Copies the key into the keyring (the caller wipes its own copy).
 */
napi_value fz_aead_key_add(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  aead_keyring *ring;
  uint8_t *raw;
  size_t raw_length;
  bool seal;
  if (argc < 3 || (ring = keyring_of(env, argv[0])) == NULL || !fz_get_bytes(env, argv[1], &raw, &raw_length)) return NULL;
  if (napi_get_value_bool(env, argv[2], &seal) != napi_ok) {
    napi_throw_type_error(env, NULL, "seal must be a boolean");
    return NULL;
  }
  if (raw_length != FZ_AEAD_KEY_SIZE) {
    napi_throw_range_error(env, NULL, "a transport key has 32 bytes");
    return NULL;
  }
  if (ring->free_count == 0 && !keyring_grow(ring)) return fz_throw_errno(env, ENOMEM, "AEAD keyring full");
  uint32_t index = ring->free_slots[--ring->free_count];
  aead_key *key = &ring->keys[index];
  memcpy(key->raw, raw, FZ_AEAD_KEY_SIZE);
  key->live = 1;
  key->seal = seal ? 1 : 0;
  key->generation++;
  ring->live++;
  napi_value id;
  FZ_CALL(env, napi_create_uint32(env, index | ((uint32_t)key->generation << KEY_INDEX_BITS), &id));
  return id;
}

/* aeadKeyRemove(ring, id) -> whether a live key was removed. Wipes it, and the context that holds it. */
napi_value fz_aead_key_remove(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  aead_keyring *ring;
  uint32_t id;
  if (argc < 2 || (ring = keyring_of(env, argv[0])) == NULL || !fz_get_u32(env, argv[1], &id)) return NULL;
  aead_key *key = key_of(ring, id);
  napi_value result;
  if (key != NULL) {
    uint32_t index = id & KEY_INDEX_MASK;
    if (ring->ctx_slot[key->seal] == index) context_forget(ring, key->seal);
    OPENSSL_cleanse(key->raw, FZ_AEAD_KEY_SIZE);
    key->live = 0;
    ring->free_slots[ring->free_count++] = index;
    ring->live--;
  }
  FZ_CALL(env, napi_get_boolean(env, key != NULL, &result));
  return result;
}

/* aeadKeyCount(ring) -> live keys (tests prove keys go with their sessions). */
napi_value fz_aead_key_count(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  aead_keyring *ring;
  if (argc < 1 || (ring = keyring_of(env, argv[0])) == NULL) return NULL;
  return fz_make_i32(env, (int32_t)ring->live);
}

static void write_nonce(uint8_t nonce[FZ_AEAD_NONCE_SIZE], uint32_t low, uint32_t high) {
  memset(nonce, 0, 4);
  fz_put_u32(nonce + 4, low);
  fz_put_u32(nonce + 8, high);
}

static int ranges_partly_overlap(const uint8_t *a, size_t a_length, const uint8_t *b, size_t b_length) {
  if (a == b) return 0;
  return a < b + b_length && b < a + a_length;
}

static uint32_t seal_one(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, uint32_t length) {
  int written = 0, final_written = 0;
  if (length > 0 && EVP_CipherUpdate(ctx, out, &written, in, (int)length) != 1) return FZ_AEAD_FAILED;
  if (EVP_CipherFinal_ex(ctx, out + written, &final_written) != 1) return FZ_AEAD_FAILED;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, FZ_AEAD_TAG_SIZE, out + length) != 1) return FZ_AEAD_FAILED;
  return FZ_AEAD_OK;
}

static uint32_t open_one(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, uint32_t sealed_length) {
  uint32_t length = sealed_length - FZ_AEAD_TAG_SIZE;
  uint8_t tag[FZ_AEAD_TAG_SIZE];
  int written = 0, final_written = 0;
  memcpy(tag, in + length, FZ_AEAD_TAG_SIZE);
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, FZ_AEAD_TAG_SIZE, tag) != 1) return FZ_AEAD_FAILED;
  if (length > 0 && EVP_CipherUpdate(ctx, out, &written, in, (int)length) != 1) return FZ_AEAD_FAILED;
  if (EVP_CipherFinal_ex(ctx, out + written, &final_written) != 1) {
    /* Unauthenticated plaintext never reaches JavaScript. */
    OPENSSL_cleanse(out, length);
    return FZ_AEAD_UNAUTHENTIC;
  }
  return FZ_AEAD_OK;
}

/*
 * aeadRun(ring, open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, count)
 *   -> jobs that succeeded.
 * Each job (FZ_AEAD_JOB_WORDS words): key id, counter low, counter high, source offset, length,
 * target offset, status (written here), reserved. Seal: `length` plaintext bytes at the source
 * offset become ciphertext || tag at the target offset. Open: `length` sealed bytes (ciphertext
 * || tag) become length - 16 plaintext bytes at the target offset, or are wiped when the tag does
 * not verify. A job's source and target ranges are either identical at the start (in place) or
 * disjoint; anything else is refused (FZ_AEAD_BAD_RANGE).
 */
napi_value fz_aead_run(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  FZ_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  aead_keyring *ring;
  bool open;
  uint8_t *source, *target, *job_bytes;
  size_t source_length, target_length, jobs_length;
  uint32_t count;
  if (argc < 6 || (ring = keyring_of(env, argv[0])) == NULL) return NULL;
  if (napi_get_value_bool(env, argv[1], &open) != napi_ok) {
    napi_throw_type_error(env, NULL, "open must be a boolean");
    return NULL;
  }
  if (!fz_get_bytes(env, argv[2], &source, &source_length) || !fz_get_bytes(env, argv[3], &target, &target_length) ||
      !fz_get_bytes(env, argv[4], &job_bytes, &jobs_length) || !fz_get_u32(env, argv[5], &count)) {
    return NULL;
  }
  if ((size_t)count * FZ_AEAD_JOB_WORDS * 4 > jobs_length || ((uintptr_t)job_bytes & 3) != 0) {
    napi_throw_range_error(env, NULL, "count exceeds jobs");
    return NULL;
  }
  uint32_t *jobs = (uint32_t *)job_bytes;
  uint8_t nonce[FZ_AEAD_NONCE_SIZE];
  int32_t succeeded = 0;
  /* Keys of many peers are cold: ask for all of the batch's at once, so their misses overlap. */
  for (uint32_t i = 0; i < count; i++) {
    uint32_t index = jobs[(size_t)i * FZ_AEAD_JOB_WORDS + FZ_AEAD_JOB_KEY] & KEY_INDEX_MASK;
    if (index < ring->capacity) __builtin_prefetch(&ring->keys[index]);
  }
  for (uint32_t i = 0; i < count; i++) {
    uint32_t *job = jobs + (size_t)i * FZ_AEAD_JOB_WORDS;
    uint32_t length = job[FZ_AEAD_JOB_LENGTH];
    size_t from = job[FZ_AEAD_JOB_SOURCE], to = job[FZ_AEAD_JOB_TARGET];
    size_t in_length = length, out_length = open ? (size_t)length - FZ_AEAD_TAG_SIZE : (size_t)length + FZ_AEAD_TAG_SIZE;
    aead_key *key = key_of(ring, job[FZ_AEAD_JOB_KEY]);
    uint32_t status;
    if (key == NULL || key->seal == (open ? 1 : 0)) {
      status = FZ_AEAD_BAD_KEY;
    } else if ((open && length < FZ_AEAD_TAG_SIZE) || length > FZ_AEAD_MAX_LENGTH || from + in_length > source_length ||
               to + out_length > target_length ||
               ranges_partly_overlap(source + from, in_length, target + to, out_length)) {
      status = FZ_AEAD_BAD_RANGE;
    } else {
      write_nonce(nonce, job[FZ_AEAD_JOB_COUNTER_LOW], job[FZ_AEAD_JOB_COUNTER_HIGH]);
      EVP_CIPHER_CTX *ctx = ring->ctx[key->seal];
      /* The context takes the key with the nonce: ChaCha20's key setup is a copy. */
      if (EVP_CipherInit_ex(ctx, NULL, NULL, key->raw, nonce, key->seal) != 1) {
        status = FZ_AEAD_FAILED;
      } else {
        ring->ctx_slot[key->seal] = (uint32_t)(key - ring->keys);
        status = open ? open_one(ctx, source + from, target + to, length) : seal_one(ctx, source + from, target + to, length);
      }
    }
    job[FZ_AEAD_JOB_STATUS] = status;
    if (status == FZ_AEAD_OK) succeeded++;
  }
  return fz_make_i32(env, succeeded);
}
