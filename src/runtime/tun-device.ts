/**
 * The TUN device `tun-firezone`: IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE, one non-blocking fd per
 * queue, read in batches through the native poller and written in batches with one N-API call.
 *
 * Read pipeline: kernel queue -> libuv readiness -> up to `batchSize` read()s into a ring that
 * this object owns -> one `onPackets(batch)` call. Each packet sits at `headroom` bytes into its
 * slot so a consumer can write tunnel headers in front of it without copying.
 *
 * The batch and its packet views are only valid during the `onPackets` call: the ring is
 * reused by the next wake-up. Copy what you keep.
 *
 * Write pipeline (default): each queue has a native writer thread; `write`/`writeBatch` copy the
 * packets into its ring and return, the thread does the `write()` syscalls (in which the kernel
 * routes, NATs and forwards the packet) on the other core. A full ring drops the packet
 * (`write` returns false). With `writerThread: false` the JS thread writes synchronously.
 *
 * Offloads (`offloads: true`, the native data path): the device is opened with IFF_VNET_HDR and
 * asked for checksum, TSO and USO offloads. The kernel may then hand over TCP or UDP packets of up
 * to 64 KiB it has not segmented, or packets whose checksum it left to us; the native reader
 * splits them into MTU-sized packets with complete checksums before JavaScript sees them, so the
 * policy core still judges every packet. The writer thread merges consecutive TCP segments of a
 * flow back into one write the kernel segments as late as it can. A kernel that refuses an
 * offload simply never uses it.
 */
import { createLogger } from '../log/index.ts';
import { SlotViews } from '../util/slot-views.ts';
import {
  loadNative,
  MAX_BATCH,
  POLLER_TUN,
  POLLER_TUN_VNET,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_USO4,
  TUN_F_USO6,
  TUN_WRITER_STAT_COALESCED,
  TUN_WRITER_STAT_ERRORS,
  TUN_WRITER_STAT_LAST_ERRNO,
  TUN_WRITER_STAT_WRITTEN,
  TUN_WRITER_STAT_WRITTEN_BYTES,
  TUN_WRITER_STATS_LENGTH,
  type NativeAddon,
  type PollerHandle,
  type TunWriterHandle,
} from './native.ts';

export const TUN_DEVICE_NAME = 'tun-firezone';
/** The tunnel MTU; larger reads are dropped like the reference's "Packet too large". */
export const MAX_IP_PACKET_SIZE = 1280;
/** WireGuard data header (16) + ChannelData header (4), rounded up. */
export const DEFAULT_HEADROOM = 32;
const DEFAULT_SLOT_SIZE = 2048;
const DEFAULT_BATCH_SIZE = 64;
const DEFAULT_WRITER_SLOTS = 1024;
/** With the ring's 4-byte length header a slot is 2 KiB. */
const DEFAULT_WRITER_SLOT_SIZE = 2044;
const MAX_CONSECUTIVE_READ_ERRORS = 16;
const OVERSIZED_WARN_INTERVAL_MS = 1000;

const logger = createLogger('tun::linux');

export interface TunReadBatch {
  readonly queue: number;
  readonly count: number;
  /** The ring the packets live in; `offset(i)`/`length(i)` locate packet i. */
  readonly buffer: Uint8Array;
  offset(index: number): number;
  length(index: number): number;
  /** A view of packet i (no copy). */
  packet(index: number): Uint8Array;
}

export type TunPacketsHandler = (batch: TunReadBatch) => void;

export interface TunDeviceOptions {
  readonly queues?: number;
  readonly batchSize?: number;
  readonly slotSize?: number;
  readonly headroom?: number;
  readonly maxPacketSize?: number;
  /** Write through a native thread per queue (default true); false writes on the JS thread. */
  readonly writerThread?: boolean;
  /** Packets the writer ring of each queue holds before writes are dropped. */
  readonly writerSlots?: number;
  readonly writerSlotSize?: number;
  /** IFF_VNET_HDR with the kernel's checksum, TSO and USO offloads (default false). */
  readonly offloads?: boolean;
  readonly onPackets: TunPacketsHandler;
  /** Called when a queue stops after repeated read errors (the device is gone). */
  readonly onQueueFailed?: (queue: number, errno: number) => void;
}

export interface TunCounters {
  rxPackets: number;
  rxBytes: number;
  rxBatches: number;
  rxOversized: number;
  rxErrors: number;
  txPackets: number;
  txBytes: number;
  txDropped: number;
  /** Writes that carried two or more merged TCP segments (offloads only). */
  txCoalescedWrites: number;
}

/** What the gateway loop needs of a TUN device; `TunDevice` and `MemoryTunDevice` provide it. */
export interface PacketDevice {
  readonly name: string;
  readonly counters: TunCounters;
  write(packet: Uint8Array, queue?: number): boolean;
  writeBatch(packets: readonly Uint8Array[], count?: number, queue?: number): number;
  close(): void;
}

export function emptyTunCounters(): TunCounters {
  return { rxPackets: 0, rxBytes: 0, rxBatches: 0, rxOversized: 0, rxErrors: 0, txPackets: 0, txBytes: 0, txDropped: 0, txCoalescedWrites: 0 };
}

export class TunDevice implements PacketDevice {
  readonly name: string;
  readonly queueCount: number;
  /** Whether reads and writes carry a virtio header (IFF_VNET_HDR). */
  readonly vnet: boolean;
  /** The TUN_F_* offload bits the kernel took (0 without offloads). */
  readonly offloads: number;

  readonly #native: NativeAddon;
  readonly #fds: number[];
  readonly #counters: TunCounters = emptyTunCounters();
  #lastWriteErrno = 0;
  readonly #writers: TunWriterHandle[] = [];
  readonly #writerStats = new Float64Array(TUN_WRITER_STATS_LENGTH);
  #writerErrorsSeen: number[] = [];
  /** Threaded mode: packets refused at the push (ring full, too large, closed). */
  #pushDrops = 0;
  readonly #readers: QueueReader[] = [];
  readonly #writeRing: Uint8Array;
  readonly #writeSpans: Uint32Array;
  readonly #writeSlotSize: number;
  readonly #writeBatchSize: number;
  /** The whole buffer the last zero-copy batch came from (its packets are passed as spans). */
  #spanSourceBuffer: ArrayBufferLike | undefined;
  #spanSource: Uint8Array = new Uint8Array(0);
  #closed = false;

  /** Opens (creating if needed) the device in the current network namespace. */
  static open(name: string, options: TunDeviceOptions): TunDevice {
    const native = loadNative();
    const queues = options.queues ?? 1;
    const opened = native.tunOpen(name, queues, options.offloads ?? false);
    if (options.offloads === true) {
      const bits = opened.offloads;
      logger.info('TUN offloads', {
        checksum: (bits & TUN_F_CSUM) !== 0,
        tso: (bits & (TUN_F_TSO4 | TUN_F_TSO6)) !== 0,
        uso: (bits & (TUN_F_USO4 | TUN_F_USO6)) !== 0,
      });
    }
    return new TunDevice(native, opened, options);
  }

  private constructor(native: NativeAddon, opened: ReturnType<NativeAddon['tunOpen']>, options: TunDeviceOptions) {
    const { name, fds } = opened;
    this.#native = native;
    this.name = name;
    this.#fds = fds;
    this.queueCount = fds.length;
    this.vnet = opened.vnet === 1;
    this.offloads = opened.offloads;
    // A read with offloads can hold dozens of packets: room for a few per wake-up.
    const batchSize = this.vnet ? MAX_BATCH : Math.min(options.batchSize ?? DEFAULT_BATCH_SIZE, MAX_BATCH);
    const slotSize = options.slotSize ?? DEFAULT_SLOT_SIZE;
    const headroom = options.headroom ?? DEFAULT_HEADROOM;
    const maxPacketSize = options.maxPacketSize ?? MAX_IP_PACKET_SIZE;
    this.#writeSlotSize = slotSize;
    this.#writeBatchSize = batchSize;
    this.#writeRing = new Uint8Array(batchSize * slotSize);
    this.#writeSpans = new Uint32Array(batchSize * 2);
    try {
      if (options.writerThread ?? true) {
        const slots = options.writerSlots ?? DEFAULT_WRITER_SLOTS;
        const writerSlotSize = options.writerSlotSize ?? DEFAULT_WRITER_SLOT_SIZE;
        const mergeUdp = (this.offloads & (TUN_F_USO4 | TUN_F_USO6)) !== 0;
        for (const fd of fds) this.#writers.push(native.tunWriterStart(fd, slots, writerSlotSize, this.vnet, mergeUdp));
        this.#writerErrorsSeen = fds.map(() => 0);
      }
      for (let queue = 0; queue < fds.length; queue++) {
        this.#readers.push(
          new QueueReader(native, queue, fds[queue]!, {
            vnet: this.vnet,
            batchSize,
            slotSize,
            headroom,
            maxPacketSize,
            counters: this.#counters,
            onPackets: options.onPackets,
            onQueueFailed: options.onQueueFailed,
          }),
        );
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * With writer threads, tx counters are what the threads wrote (read from the addon when this is
   * read) plus the packets refused at the push; txDropped includes failed write()s.
   */
  get counters(): TunCounters {
    this.#syncWriterCounters();
    return this.#counters;
  }

  /** errno of the most recent failed write (ENOBUFS: writer ring full), 0 if none yet. */
  get lastWriteErrno(): number {
    this.#syncWriterCounters();
    return this.#lastWriteErrno;
  }

  /** Whether writes go through native writer threads. */
  get threadedWrites(): boolean {
    return this.#writers.length > 0;
  }

  /** Packets queued in the writer rings and not yet written (0 without writer threads). */
  pendingWrites(): number {
    let pending = 0;
    for (const writer of this.#writers) {
      this.#native.tunWriterStats(writer, this.#writerStats);
      pending += this.#writerStats[4]!;
    }
    return pending;
  }

  #syncWriterCounters(): void {
    if (this.#writers.length === 0) return;
    const stats = this.#writerStats;
    let packets = 0;
    let bytes = 0;
    let errors = 0;
    let coalesced = 0;
    for (let queue = 0; queue < this.#writers.length; queue++) {
      this.#native.tunWriterStats(this.#writers[queue]!, stats);
      packets += stats[TUN_WRITER_STAT_WRITTEN]!;
      bytes += stats[TUN_WRITER_STAT_WRITTEN_BYTES]!;
      coalesced += stats[TUN_WRITER_STAT_COALESCED]!;
      const queueErrors = stats[TUN_WRITER_STAT_ERRORS]!;
      errors += queueErrors;
      if (queueErrors > this.#writerErrorsSeen[queue]!) {
        this.#writerErrorsSeen[queue] = queueErrors;
        this.#lastWriteErrno = stats[TUN_WRITER_STAT_LAST_ERRNO]!;
      }
    }
    this.#counters.txPackets = packets;
    this.#counters.txBytes = bytes;
    this.#counters.txDropped = this.#pushDrops + errors;
    this.#counters.txCoalescedWrites = coalesced;
  }

  /** The descriptor of a queue, for callers that need raw access (benchmarks). */
  fd(queue = 0): number {
    const fd = this.#fds[queue];
    if (fd === undefined) throw new RangeError(`no TUN queue ${queue}`);
    return fd;
  }

  /**
   * Writes one IP packet; returns false (and counts a drop) when it was refused: by the kernel
   * (synchronous mode) or by a full writer ring. A queued packet the kernel refuses later is
   * counted in `counters.txDropped` only.
   */
  write(packet: Uint8Array, queue = 0): boolean {
    if (this.#closed) return false;
    if (this.#writers.length > 0) {
      const errno = this.#native.tunWriterPush(this.#writers[queue] ?? this.#writers[0]!, packet);
      if (errno === 0) return true;
      this.#lastWriteErrno = errno;
      this.#pushDrops++;
      return false;
    }
    const errno = this.#native.tunWrite(this.#fds[queue] ?? this.#fds[0]!, packet, this.vnet);
    if (errno !== 0) {
      this.#lastWriteErrno = errno;
      this.#counters.txDropped++;
      return false;
    }
    this.#counters.txPackets++;
    this.#counters.txBytes += packet.length;
    return true;
  }

  /**
   * Writes `count` packets with one native call per `batchSize` packets. Packets that all lie in
   * one buffer (the batch arena of the data path) are passed where they are; others are copied
   * into the write ring first. Returns how many the kernel accepted (with writer threads: how
   * many were queued); the rest count as drops.
   */
  writeBatch(packets: readonly Uint8Array[], count = packets.length, queue = 0): number {
    if (this.#closed) return 0;
    if (count > 0 && count <= this.#writeBatchSize && sameBuffer(packets, count)) return this.#writeInPlace(packets, count, queue);
    const fd = this.#fds[queue] ?? this.#fds[0]!;
    const writer = this.#writers.length > 0 ? (this.#writers[queue] ?? this.#writers[0]!) : undefined;
    const counters = this.#counters;
    const ring = this.#writeRing;
    const spans = this.#writeSpans;
    const slotSize = this.#writeSlotSize;
    let written = 0;
    let index = 0;
    while (index < count) {
      let inBatch = 0;
      let bytes = 0;
      while (index < count && inBatch < this.#writeBatchSize) {
        const packet = packets[index++]!;
        if (packet.length > slotSize) {
          if (writer === undefined) counters.txDropped++;
          else this.#pushDrops++;
          continue;
        }
        const offset = inBatch * slotSize;
        ring.set(packet, offset);
        spans[inBatch * 2] = offset;
        spans[inBatch * 2 + 1] = packet.length;
        bytes += packet.length;
        inBatch++;
      }
      if (writer !== undefined) {
        const queued = this.#native.tunWriterPushBatch(writer, ring, spans, inBatch);
        written += queued;
        if (queued === inBatch) continue;
        this.#pushDrops += inBatch - queued;
        for (let i = 0; i < inBatch; i++) if (spans[i * 2 + 1] === 0) this.#lastWriteErrno = spans[i * 2]!;
        continue;
      }
      const accepted = this.#native.tunWriteBatch(fd, ring, spans, inBatch, this.vnet);
      written += accepted;
      counters.txPackets += accepted;
      counters.txDropped += inBatch - accepted;
      if (accepted === inBatch) {
        counters.txBytes += bytes;
        continue;
      }
      for (let i = 0; i < inBatch; i++) {
        const length = spans[i * 2 + 1]!;
        if (length === 0) this.#lastWriteErrno = spans[i * 2]!;
        else counters.txBytes += length;
      }
    }
    return written;
  }

  #writeInPlace(packets: readonly Uint8Array[], count: number, queue: number): number {
    const buffer = packets[0]!.buffer;
    if (buffer !== this.#spanSourceBuffer) {
      this.#spanSourceBuffer = buffer;
      this.#spanSource = new Uint8Array(buffer);
    }
    const spans = this.#writeSpans;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const packet = packets[i]!;
      spans[i * 2] = packet.byteOffset;
      spans[i * 2 + 1] = packet.length;
      bytes += packet.length;
    }
    const writer = this.#writers.length > 0 ? (this.#writers[queue] ?? this.#writers[0]!) : undefined;
    const counters = this.#counters;
    if (writer !== undefined) {
      const queued = this.#native.tunWriterPushBatch(writer, this.#spanSource, spans, count);
      if (queued === count) return queued;
      this.#pushDrops += count - queued;
      for (let i = 0; i < count; i++) if (spans[i * 2 + 1] === 0) this.#lastWriteErrno = spans[i * 2]!;
      return queued;
    }
    const accepted = this.#native.tunWriteBatch(this.#fds[queue] ?? this.#fds[0]!, this.#spanSource, spans, count, this.vnet);
    counters.txPackets += accepted;
    counters.txDropped += count - accepted;
    if (accepted === count) {
      counters.txBytes += bytes;
      return accepted;
    }
    for (let i = 0; i < count; i++) {
      const length = spans[i * 2 + 1]!;
      if (length === 0) this.#lastWriteErrno = spans[i * 2]!;
      else counters.txBytes += length;
    }
    return accepted;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const reader of this.#readers) reader.stop();
    for (const writer of this.#writers) this.#native.tunWriterStop(writer);
    for (const fd of this.#fds) this.#native.closeFd(fd);
  }

  get closed(): boolean {
    return this.#closed;
  }
}

function sameBuffer(packets: readonly Uint8Array[], count: number): boolean {
  const buffer = packets[0]!.buffer;
  for (let i = 1; i < count; i++) if (packets[i]!.buffer !== buffer) return false;
  return true;
}

interface QueueReaderOptions {
  readonly vnet: boolean;
  readonly batchSize: number;
  readonly slotSize: number;
  readonly headroom: number;
  readonly maxPacketSize: number;
  readonly counters: TunCounters;
  readonly onPackets: TunPacketsHandler;
  readonly onQueueFailed: ((queue: number, errno: number) => void) | undefined;
}

class QueueReader implements TunReadBatch {
  readonly queue: number;
  readonly buffer: Uint8Array;
  count = 0;

  readonly #native: NativeAddon;
  readonly #counters: TunCounters;
  readonly #lengths: Uint32Array;
  readonly #slotOf: Uint16Array;
  readonly #views: SlotViews;
  readonly #slotSize: number;
  readonly #headroom: number;
  readonly #maxPacketSize: number;
  readonly #onPackets: TunPacketsHandler;
  readonly #onQueueFailed: ((queue: number, errno: number) => void) | undefined;
  #poller: PollerHandle | undefined;
  #consecutiveErrors = 0;
  #lastOversizedWarnAt = -Infinity;

  constructor(native: NativeAddon, queue: number, fd: number, options: QueueReaderOptions) {
    this.#native = native;
    this.queue = queue;
    this.#slotSize = options.slotSize;
    this.#headroom = options.headroom;
    this.#maxPacketSize = options.maxPacketSize;
    this.#counters = options.counters;
    this.#onPackets = options.onPackets;
    this.#onQueueFailed = options.onQueueFailed;
    this.buffer = new Uint8Array(options.batchSize * options.slotSize);
    const meta = new Uint8Array(options.batchSize * 4);
    this.#lengths = new Uint32Array(meta.buffer);
    this.#slotOf = new Uint16Array(options.batchSize);
    this.#views = new SlotViews(this.buffer, options.batchSize);
    this.#poller = native.pollerStart(
      fd,
      options.vnet ? POLLER_TUN_VNET : POLLER_TUN,
      this.buffer,
      options.slotSize,
      options.headroom,
      options.batchSize,
      meta,
      (count, errno) => this.#onReadable(count, errno),
    );
  }

  offset(index: number): number {
    return this.#slotOf[index]! * this.#slotSize + this.#headroom;
  }

  length(index: number): number {
    return this.#lengths[this.#slotOf[index]!]!;
  }

  packet(index: number): Uint8Array {
    return this.#views.view(this.#slotOf[index]!, this.offset(index), this.length(index));
  }

  stop(): void {
    if (this.#poller === undefined) return;
    this.#native.pollerStop(this.#poller);
    this.#poller = undefined;
  }

  #onReadable(received: number, errno: number): void {
    const counters = this.#counters;
    if (errno !== 0) this.#onReadError(errno);
    if (received === 0) return;
    this.#consecutiveErrors = 0;
    let kept = 0;
    for (let slot = 0; slot < received; slot++) {
      const length = this.#lengths[slot]!;
      if (length > this.#maxPacketSize) {
        counters.rxOversized++;
        this.#warnOversized(length);
        continue;
      }
      counters.rxBytes += length;
      this.#slotOf[kept++] = slot;
    }
    counters.rxPackets += kept;
    counters.rxBatches++;
    if (kept === 0) return;
    this.count = kept;
    this.#onPackets(this);
  }

  #warnOversized(length: number): void {
    const now = performance.now();
    if (now - this.#lastOversizedWarnAt < OVERSIZED_WARN_INTERVAL_MS) return;
    this.#lastOversizedWarnAt = now;
    logger.warn('Failed to read from TUN FD: Packet too large', { length, dropped: this.#counters.rxOversized });
  }

  #onReadError(errno: number): void {
    this.#counters.rxErrors++;
    this.#consecutiveErrors++;
    logger.warn('Failed to read from TUN FD', { queue: this.queue, errno });
    if (this.#consecutiveErrors < MAX_CONSECUTIVE_READ_ERRORS) return;
    this.stop();
    this.#onQueueFailed?.(this.queue, errno);
  }
}

/**
 * The in-memory twin of `TunDevice` for tests and simulations: `deliver()` plays the kernel
 * handing packets to us (one batch, same view semantics), `written` collects copies of what we
 * wrote.
 */
export class MemoryTunDevice implements PacketDevice, TunReadBatch {
  readonly name: string;
  readonly counters: TunCounters = emptyTunCounters();
  readonly written: Uint8Array[] = [];
  readonly queue = 0;
  readonly buffer: Uint8Array;
  count = 0;

  readonly #onPackets: TunPacketsHandler;
  readonly #offsets: number[] = [];
  readonly #lengths: number[] = [];
  #closed = false;

  constructor(name: string, onPackets: TunPacketsHandler, capacity = 64 * DEFAULT_SLOT_SIZE) {
    this.name = name;
    this.#onPackets = onPackets;
    this.buffer = new Uint8Array(capacity);
  }

  offset(index: number): number {
    return this.#offsets[index]!;
  }

  length(index: number): number {
    return this.#lengths[index]!;
  }

  packet(index: number): Uint8Array {
    const offset = this.offset(index);
    return this.buffer.subarray(offset, offset + this.length(index));
  }

  /** Hands `packets` to the consumer as one batch, dropping oversized ones like the real device. */
  deliver(packets: readonly Uint8Array[]): void {
    if (this.#closed) return;
    this.#offsets.length = 0;
    this.#lengths.length = 0;
    let offset = DEFAULT_HEADROOM;
    for (const packet of packets) {
      if (packet.length > MAX_IP_PACKET_SIZE) {
        this.counters.rxOversized++;
        continue;
      }
      this.buffer.set(packet, offset);
      this.#offsets.push(offset);
      this.#lengths.push(packet.length);
      this.counters.rxPackets++;
      this.counters.rxBytes += packet.length;
      offset += packet.length + DEFAULT_HEADROOM;
    }
    this.counters.rxBatches++;
    this.count = this.#offsets.length;
    if (this.count > 0) this.#onPackets(this);
  }

  write(packet: Uint8Array): boolean {
    if (this.#closed) return false;
    this.written.push(packet.slice());
    this.counters.txPackets++;
    this.counters.txBytes += packet.length;
    return true;
  }

  writeBatch(packets: readonly Uint8Array[], count = packets.length): number {
    let written = 0;
    for (let i = 0; i < count; i++) if (this.write(packets[i]!)) written++;
    return written;
  }

  close(): void {
    this.#closed = true;
  }
}
