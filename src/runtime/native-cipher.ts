/**
 * The transport AEAD on the native addon: the keys in a native keyring (one cache line each), a
 * whole batch of jobs per call through OpenSSL's EVP ChaCha20-Poly1305 (native/aead.c). The keys
 * live only in native memory; `removeKey` wipes them.
 */
import type { TransportCipher } from '../wireguard/transport-cipher.ts';
import { loadNative, type AeadKeyringHandle, type NativeAddon } from './native.ts';

export class NativeTransportCipher implements TransportCipher {
  readonly kind = 'native';
  readonly #native: NativeAddon;
  readonly #ring: AeadKeyringHandle;

  constructor(native: NativeAddon = loadNative()) {
    this.#native = native;
    this.#ring = native.aeadKeyringCreate();
  }

  get keyCount(): number {
    return this.#native.aeadKeyCount(this.#ring);
  }

  addKey(raw: Uint8Array, seal: boolean): number {
    return this.#native.aeadKeyAdd(this.#ring, raw, seal);
  }

  removeKey(id: number): void {
    this.#native.aeadKeyRemove(this.#ring, id);
  }

  run(open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, count: number): number {
    return this.#native.aeadRun(this.#ring, open, source, target, jobs, count);
  }
}
