/**
 * Views into a batch buffer without allocating one per packet: each slot keeps the last view it
 * handed out and returns it again while offset and length repeat (in bulk traffic they nearly
 * always do). A view is only meaningful while its slot holds the same packet.
 */
export class SlotViews {
  readonly buffer: Uint8Array;
  readonly #views: (Uint8Array | undefined)[];

  constructor(buffer: Uint8Array, slots: number) {
    this.buffer = buffer;
    this.#views = new Array<Uint8Array | undefined>(slots).fill(undefined);
  }

  /** The bytes [offset, offset + length) of the buffer, cached under `slot`. */
  view(slot: number, offset: number, length: number): Uint8Array {
    const cached = this.#views[slot];
    if (cached !== undefined && cached.length === length && cached.byteOffset === this.buffer.byteOffset + offset) return cached;
    const view = this.buffer.subarray(offset, offset + length);
    this.#views[slot] = view;
    return view;
  }
}
