// Batched transport data: the data messages of one input batch are sealed or opened with one
// `TransportCipher.run` call, in arenas reused from batch to batch, so that the data path
// allocates nothing per packet. The Tunnel still decides everything the protocol decides (which
// session, which counter, whether the replay window takes it); a batch only carries the AEAD
// work and its outputs.
//
// Sealing: `Tunnel.encapsulateInto` copies the IP packet into a slot and writes the transport
// header in front of it; `next()` seals all queued slots in one call and then yields them.
// Opening: `Tunnel.decapsulate(..., batch)` checks the header and queues the ciphertext (which
// stays where it was received); `run()` opens all queued messages into the arena in one call and
// lets each tunnel finish its own (replay window, timers, session confirmation); `next()` yields
// the results in arrival order.
import { SlotViews } from '../util/slot-views.ts';
import { AEAD_TAG_SIZE, TRANSPORT_HEADER_SIZE, TRANSPORT_MIN_SIZE, TRANSPORT_OFFSET_DATA } from './constants.ts';
import type { Session } from './session.ts';
import { AEAD_JOB_LENGTH, AEAD_JOB_STATUS, AEAD_JOB_WORDS, writeAeadJob, type TransportCipher } from './transport-cipher.ts';
import type { DecapsulateDrop, DecapsulateOutcome, Tunnel } from './tunnel.ts';

/** Packets per batch; the runtime reads at most this many per wake-up (native MAX_BATCH). */
export const TRANSPORT_BATCH_CAPACITY = 256;
/** A slot holds the largest datagram the node accepts (1316 bytes) with room in front. */
const SLOT_SIZE = 1344;

/** Seals transport messages in place in a reused arena. */
export class SealBatch {
  readonly capacity: number;
  /** Free bytes in front of each datagram (for a ChannelData header). */
  readonly headroom: number;
  /** The largest plaintext a slot takes. */
  readonly maxPlaintext: number;
  readonly #cipher: TransportCipher;
  readonly #arena: Uint8Array;
  readonly #jobs: Uint32Array;
  readonly #lengths: Uint16Array;
  readonly #datagrams: SlotViews;
  readonly #framed: SlotViews;
  #count = 0;
  #cursor = 0;
  #sealed = false;

  constructor(cipher: TransportCipher, headroom: number, capacity = TRANSPORT_BATCH_CAPACITY) {
    this.#cipher = cipher;
    this.headroom = headroom;
    this.capacity = capacity;
    this.maxPlaintext = SLOT_SIZE - headroom - TRANSPORT_MIN_SIZE;
    this.#arena = new Uint8Array(capacity * SLOT_SIZE);
    this.#jobs = new Uint32Array(capacity * AEAD_JOB_WORDS);
    this.#lengths = new Uint16Array(capacity);
    this.#datagrams = new SlotViews(this.#arena, capacity);
    this.#framed = new SlotViews(this.#arena, capacity);
  }

  /** Packets queued and not yet handed out by `next`. */
  get pending(): number {
    return this.#count - this.#cursor;
  }

  /** Whether a plaintext of `length` bytes can be queued now (not while a sealed batch is being drained). */
  hasRoom(length: number): boolean {
    return !this.#sealed && this.#count < this.capacity && length <= this.maxPlaintext;
  }

  /** Queues `plaintext` under the session's next counter; returns its slot. Check `hasRoom` first. */
  queue(session: Session, plaintext: Uint8Array): number {
    const slot = this.#count++;
    const offset = slot * SLOT_SIZE + this.headroom;
    const data = offset + TRANSPORT_OFFSET_DATA;
    this.#arena.set(plaintext, data);
    const counter = session.writeHeader(this.#arena, offset);
    writeAeadJob(this.#jobs, slot, session.sendKey, counter, data, plaintext.length, data);
    this.#lengths[slot] = TRANSPORT_MIN_SIZE + plaintext.length;
    return slot;
  }

  /**
   * Seals everything queued (one cipher call, on the first call after queueing), then returns
   * the next slot in queueing order, or -1 when all were handed out (the batch is then empty).
   */
  next(): number {
    if (this.#cursor === this.#count) {
      this.#count = this.#cursor = 0;
      this.#sealed = false;
      return -1;
    }
    if (!this.#sealed) {
      this.#sealed = true;
      this.#cipher.run(false, this.#arena, this.#arena, this.#jobs, this.#count);
    }
    return this.#cursor++;
  }

  /** Whether a handed-out slot was sealed (a failure means its key was released meanwhile). */
  sealed(slot: number): boolean {
    return this.#jobs[slot * AEAD_JOB_WORDS + AEAD_JOB_STATUS] === 0;
  }

  /** The sealed datagram in a slot, with `headroom` free bytes in front of it. */
  datagram(slot: number): Uint8Array {
    return this.#datagrams.view(slot, slot * SLOT_SIZE + this.headroom, this.#lengths[slot]!);
  }

  /** The datagram with its headroom included (the caller writes a header there). */
  framed(slot: number): Uint8Array {
    return this.#framed.view(slot, slot * SLOT_SIZE, this.#lengths[slot]! + this.headroom);
  }
}

/** What `OpenBatch.next` yields: the IP packet's length, or why there is no packet. */
export type OpenOutcome = number | DecapsulateOutcome | DecapsulateDrop;

/** Opens received transport messages into a reused arena. */
export class OpenBatch {
  readonly capacity: number;
  readonly #cipher: TransportCipher;
  readonly #arena: Uint8Array;
  readonly #jobs: Uint32Array;
  readonly #packets: SlotViews;
  readonly #tunnels: (Tunnel | undefined)[];
  readonly #sessions: (Session | undefined)[];
  readonly #counters: Float64Array;
  readonly #outcomes: OpenOutcome[];
  /** The buffer the queued ciphertexts are in, and a view of all of it for the cipher. */
  #sourceBuffer: ArrayBufferLike | undefined;
  #source: Uint8Array = new Uint8Array(0);
  #count = 0;
  #completed = 0;
  #cursor = 0;

  constructor(cipher: TransportCipher, capacity = TRANSPORT_BATCH_CAPACITY) {
    this.#cipher = cipher;
    this.capacity = capacity;
    this.#arena = new Uint8Array(capacity * SLOT_SIZE);
    this.#jobs = new Uint32Array(capacity * AEAD_JOB_WORDS);
    this.#packets = new SlotViews(this.#arena, capacity);
    this.#tunnels = new Array<Tunnel | undefined>(capacity).fill(undefined);
    this.#sessions = new Array<Session | undefined>(capacity).fill(undefined);
    this.#counters = new Float64Array(capacity);
    this.#outcomes = new Array<OpenOutcome>(capacity).fill('decryptFailed');
  }

  /** Messages queued and not yet opened. */
  get unopened(): number {
    return this.#count - this.#completed;
  }

  /** The slot of the message queued last. */
  get lastSlot(): number {
    return this.#count - 1;
  }

  /** Messages queued or opened and not yet handed out by `next`. */
  get pending(): number {
    return this.#count - this.#cursor;
  }

  /**
   * Whether `message` can join the batch: there is a free slot, it fits one, and it lies in the
   * same buffer as the messages waiting to be opened (else `run` them first).
   */
  accepts(message: Uint8Array): boolean {
    return (
      this.#count < this.capacity &&
      message.length - TRANSPORT_MIN_SIZE <= SLOT_SIZE &&
      (this.#completed === this.#count || message.buffer === this.#sourceBuffer)
    );
  }

  /** Queues a transport message for `session` of `tunnel` with its (replay-checked) counter. */
  queue(tunnel: Tunnel, session: Session, counter: number, message: Uint8Array): void {
    if (message.buffer !== this.#sourceBuffer) {
      this.#sourceBuffer = message.buffer;
      this.#source = new Uint8Array(message.buffer);
    }
    const slot = this.#count++;
    this.#tunnels[slot] = tunnel;
    this.#sessions[slot] = session;
    this.#counters[slot] = counter;
    writeAeadJob(
      this.#jobs,
      slot,
      session.receiveKey,
      counter,
      message.byteOffset + TRANSPORT_OFFSET_DATA,
      message.length - TRANSPORT_HEADER_SIZE,
      slot * SLOT_SIZE,
    );
  }

  /**
   * Opens every queued message with one cipher call and lets each tunnel account for its own
   * (replay window, timers, session confirmation), in arrival order.
   */
  run(now: number): void {
    const from = this.#completed;
    const count = this.#count - from;
    if (count === 0) return;
    const jobs = from === 0 ? this.#jobs : this.#jobs.subarray(from * AEAD_JOB_WORDS);
    this.#cipher.run(true, this.#source, this.#arena, jobs, count);
    for (let slot = from; slot < this.#count; slot++) {
      const status = this.#jobs[slot * AEAD_JOB_WORDS + AEAD_JOB_STATUS]!;
      const sealedLength = this.#jobs[slot * AEAD_JOB_WORDS + AEAD_JOB_LENGTH]!;
      // Counted before the tunnel sees it, so a tunnel that throws loses this message only.
      this.#completed = slot + 1;
      this.#outcomes[slot] = 'decryptFailed';
      this.#outcomes[slot] = this.#tunnels[slot]!.completeOpen(
        this.#sessions[slot]!,
        this.#counters[slot]!,
        status,
        this.#arena,
        slot * SLOT_SIZE,
        sealedLength - AEAD_TAG_SIZE,
        now,
      );
      this.#sessions[slot] = undefined;
    }
  }

  /**
   * Runs what is still unopened, then returns the next slot in arrival order, or -1 when all
   * were handed out (the batch is then empty). Read it with `outcome`, `tunnel` and `packet`.
   */
  next(now: number): number {
    if (this.#cursor === this.#count) {
      for (let slot = 0; slot < this.#count; slot++) this.#tunnels[slot] = undefined;
      this.#count = this.#completed = this.#cursor = 0;
      return -1;
    }
    if (this.#completed < this.#count) this.run(now);
    return this.#cursor++;
  }

  outcome(slot: number): OpenOutcome {
    return this.#outcomes[slot]!;
  }

  tunnel(slot: number): Tunnel {
    return this.#tunnels[slot]!;
  }

  /** The IP packet of a slot whose outcome is a length. */
  packet(slot: number): Uint8Array {
    return this.#packets.view(slot, slot * SLOT_SIZE, this.#outcomes[slot] as number);
  }
}
