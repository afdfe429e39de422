/**
 * The data-plane UDP sockets (52625, one per address family), backed by the native addon.
 *
 * Receive: libuv readiness -> one recvmmsg of up to `batchSize` receives, each with its
 * IP_PKTINFO / IPV6_PKTINFO destination and its TOS byte (ECN) -> one `onDatagrams(batch)` call.
 * With `offloads` the socket asks for UDP_GRO: a receive may then hold up to 64 datagrams of one
 * sender back to back (each slot is 64 KiB), and the batch lists each datagram on its own. The
 * batch is only valid during that call (the ring is reused); copy what you keep.
 *
 * Send: `send()` copies the payload into a send ring; the ring goes out with one sendmmsg at the
 * end of the current microtask checkpoint, when full, or on `flush()`. A source address pins the
 * local IP with IP_PKTINFO / IPV6_PKTINFO (connectivity §1.3); an ECN codepoint goes out with
 * IP_TOS / IPV6_TCLASS. With `offloads` and a kernel that has UDP_SEGMENT, consecutive datagrams
 * to one destination of one size leave as one GSO send; if the kernel refuses one, it is resent
 * datagram by datagram and GSO stays off for the socket. A datagram the kernel refuses (EAGAIN on
 * a full send buffer, ENETUNREACH, ...) is dropped and counted, like any UDP loss.
 */
import { createLogger, Level } from '../log/index.ts';
import { formatIpv4, formatIpv6InetNtop, writeIpText } from '../ip/index.ts';
import { MAX_DATAGRAM_PAYLOAD } from '../snownet/constants.ts';
import { SlotViews } from '../util/slot-views.ts';
import { socketAddr, type SocketAddr } from '../util/socket-addr.ts';
import type { Transmit } from '../util/transmit.ts';
import {
  GRO_BUFFER,
  GRO_MAX_SEGMENTS,
  isNativeError,
  loadNative,
  MAX_BATCH,
  POLLER_UDP,
  POLLER_UDP_GRO,
  RECV_FLAG_COALESCED,
  RECV_FLAG_PKTINFO,
  RECV_FLAG_TOS,
  RECV_FLAG_TRUNCATED,
  RECV_META_DST_IP,
  RECV_META_FAMILY,
  RECV_META_FLAGS,
  RECV_META_LENGTH,
  RECV_META_OFFSET,
  RECV_META_SRC_IP,
  RECV_META_SRC_PORT,
  RECV_META_STRIDE,
  RECV_META_TOS,
  SEND_META_DST_IP,
  SEND_META_DST_PORT,
  SEND_META_ERRNO,
  SEND_META_FAMILY,
  SEND_META_HAS_SRC,
  SEND_META_LENGTH,
  SEND_META_OFFSET,
  SEND_META_SRC_IP,
  SEND_META_STRIDE,
  SEND_META_TOS,
  type NativeAddon,
  type PollerHandle,
} from './native.ts';
import { RECEIVE_BUFFER_SIZE, SEND_BUFFER_SIZE } from './socket-buffers.ts';

export { RECEIVE_BUFFER_SIZE, SEND_BUFFER_SIZE };
export const DATA_PLANE_PORT = 52625;
export const FIREZONE_MARK = 0xfd002021;
const DEFAULT_SLOT_SIZE = 2048;
const DEFAULT_BATCH_SIZE = 64;
const EAGAIN = 11;
const EADDRINUSE = 98;

const logger = createLogger('socket_factory');

export interface UdpDatagramBatch {
  readonly count: number;
  /** The ring the payloads live in. */
  readonly buffer: Uint8Array;
  offset(index: number): number;
  length(index: number): number;
  /** A view of datagram i's payload (no copy). */
  payload(index: number): Uint8Array;
  source(index: number): SocketAddr;
  /** The local address the datagram was sent to: the pktinfo destination IP and our port. */
  destination(index: number): SocketAddr;
  /** The ECN codepoint of the datagram's IP header (0 when unknown). */
  ecn(index: number): number;
}

export type UdpDatagramsHandler = (batch: UdpDatagramBatch) => void;

export interface UdpSocketOptions {
  readonly family: 4 | 6;
  /** Bind address; the wildcard of the family by default. */
  readonly address?: string;
  readonly port?: number;
  /** Retry on an ephemeral port when `port` is taken (default true). */
  readonly fallbackToEphemeral?: boolean;
  readonly receiveBufferSize?: number;
  readonly sendBufferSize?: number;
  /** SO_MARK to set if permitted; 0 disables. */
  readonly mark?: number;
  readonly batchSize?: number;
  readonly slotSize?: number;
  readonly headroom?: number;
  readonly maxPayloadSize?: number;
  /** Ask the kernel for UDP GRO on receive and GSO on send (default false: one datagram per receive and send). */
  readonly offloads?: boolean;
  readonly onDatagrams: UdpDatagramsHandler;
}

export interface UdpCounters {
  rxDatagrams: number;
  rxBytes: number;
  rxBatches: number;
  rxOversized: number;
  rxWithoutPktinfo: number;
  rxErrors: number;
  txDatagrams: number;
  txBytes: number;
  txDropped: number;
  txWouldBlock: number;
  /** Datagrams that arrived coalesced (GRO). */
  rxCoalesced: number;
  /** GSO sends (each carried two or more datagrams). */
  txGsoSends: number;
}

/** What the gateway loop needs of a data-plane socket; `UdpSocket` and `MemoryUdpSocket` provide it. */
export interface DatagramSocket {
  readonly family: 4 | 6;
  readonly port: number;
  readonly counters: UdpCounters;
  /** Queues a datagram; `ecn` is the ECN codepoint for its IP header. */
  send(payload: Uint8Array, destination: SocketAddr, source?: SocketAddr, ecn?: number): boolean;
  flush(): number;
  close(): void;
}

export function emptyUdpCounters(): UdpCounters {
  return {
    rxDatagrams: 0,
    rxBytes: 0,
    rxBatches: 0,
    rxOversized: 0,
    rxWithoutPktinfo: 0,
    rxErrors: 0,
    txDatagrams: 0,
    txBytes: 0,
    txDropped: 0,
    txWouldBlock: 0,
    rxCoalesced: 0,
    txGsoSends: 0,
  };
}

export class UdpSocket implements UdpDatagramBatch, DatagramSocket {
  readonly family: 4 | 6;
  readonly port: number;
  readonly receiveBufferSize: number;
  readonly sendBufferSize: number;
  /** errno of the failed buffer-size request, 0 when both were accepted. */
  readonly bufferErrno: number;
  readonly marked: boolean;
  /** Whether the kernel coalesces received datagrams (UDP_GRO). */
  readonly gro: boolean;
  readonly counters: UdpCounters = emptyUdpCounters();
  /** errno of the most recent failed send, 0 if none yet. */
  lastSendErrno = 0;
  /** Called after a flush in which some datagrams failed, with the errno of the last one. */
  onSendError: ((errno: number) => void) | undefined;

  readonly buffer: Uint8Array;
  count = 0;

  readonly #native: NativeAddon;
  readonly #fd: number;
  readonly #codec = new AddressCodec();
  readonly #meta: Uint8Array;
  readonly #metaView: DataView;
  /** Meta entry of each datagram handed out. */
  readonly #entryOf: Uint16Array;
  readonly #views: SlotViews;
  readonly #maxPayloadSize: number;
  readonly #onDatagrams: UdpDatagramsHandler;
  readonly #sendStatus = new Int32Array(2);
  #gso: boolean;
  readonly #sendSlotSize: number;
  readonly #sendRing: Uint8Array;
  readonly #sendMeta: Uint8Array;
  readonly #sendMetaView: DataView;
  readonly #sendCapacity: number;
  readonly #flushTask = (): void => {
    this.#flushScheduled = false;
    this.flush();
  };
  #sendQueued = 0;
  #flushScheduled = false;
  #poller: PollerHandle | undefined;

  /**
   * Binds a socket; on EADDRINUSE falls back to an ephemeral port unless told not to.
   * Throws a NativeError (code `EADDRINUSE`, `EADDRNOTAVAIL`, ...) when binding fails.
   */
  static bind(options: UdpSocketOptions): UdpSocket {
    const native = loadNative();
    const address = options.address ?? (options.family === 4 ? '0.0.0.0' : '::');
    const port = options.port ?? DATA_PLANE_PORT;
    const open = (p: number) =>
      native.udpOpen(
        options.family,
        address,
        p,
        options.receiveBufferSize ?? RECEIVE_BUFFER_SIZE,
        options.sendBufferSize ?? SEND_BUFFER_SIZE,
        options.mark ?? FIREZONE_MARK,
        options.offloads ?? false,
      );
    let opened;
    try {
      opened = open(port);
    } catch (error) {
      const canFallBack = (options.fallbackToEphemeral ?? true) && port !== 0;
      if (!canFallBack || !isNativeError(error) || error.errno !== EADDRINUSE) throw error;
      opened = open(0);
    }
    return new UdpSocket(native, opened, options);
  }

  private constructor(
    native: NativeAddon,
    opened: ReturnType<NativeAddon['udpOpen']>,
    options: UdpSocketOptions,
  ) {
    this.#native = native;
    this.#fd = opened.fd;
    this.family = options.family;
    this.port = opened.port;
    this.receiveBufferSize = opened.receiveBufferSize;
    this.sendBufferSize = opened.sendBufferSize;
    this.bufferErrno = opened.bufferErrno;
    this.marked = (options.mark ?? FIREZONE_MARK) !== 0 && opened.markErrno === 0;
    this.gro = opened.gro === 1;
    this.#gso = opened.gso === 1;
    const batchSize = Math.min(options.batchSize ?? DEFAULT_BATCH_SIZE, MAX_BATCH);
    this.#sendSlotSize = options.slotSize ?? DEFAULT_SLOT_SIZE;
    const receiveSlotSize = this.gro ? GRO_BUFFER : this.#sendSlotSize;
    const headroom = this.gro ? 0 : (options.headroom ?? 0);
    const entries = this.gro ? batchSize * GRO_MAX_SEGMENTS : batchSize;
    this.#maxPayloadSize = options.maxPayloadSize ?? MAX_DATAGRAM_PAYLOAD;
    this.#onDatagrams = options.onDatagrams;
    this.buffer = new Uint8Array(batchSize * receiveSlotSize);
    this.#meta = new Uint8Array(entries * RECV_META_STRIDE);
    this.#metaView = new DataView(this.#meta.buffer);
    this.#entryOf = new Uint16Array(entries);
    this.#views = new SlotViews(this.buffer, entries);
    this.#sendCapacity = batchSize;
    this.#sendRing = new Uint8Array(batchSize * this.#sendSlotSize);
    this.#sendMeta = new Uint8Array(batchSize * SEND_META_STRIDE);
    this.#sendMetaView = new DataView(this.#sendMeta.buffer);
    try {
      this.#poller = native.pollerStart(
        this.#fd,
        this.gro ? POLLER_UDP_GRO : POLLER_UDP,
        this.buffer,
        receiveSlotSize,
        headroom,
        batchSize,
        this.#meta,
        (received, errno) => this.#onReadable(received, errno),
      );
    } catch (error) {
      native.closeFd(this.#fd);
      throw error;
    }
  }

  /** Whether GSO is on for sends (the kernel has UDP_SEGMENT and has not refused it). */
  get gso(): boolean {
    return this.#gso;
  }

  offset(index: number): number {
    return this.#metaView.getUint32(this.#entryOf[index]! * RECV_META_STRIDE + RECV_META_OFFSET, true);
  }

  length(index: number): number {
    return this.#metaView.getUint32(this.#entryOf[index]! * RECV_META_STRIDE + RECV_META_LENGTH, true);
  }

  payload(index: number): Uint8Array {
    return this.#views.view(this.#entryOf[index]!, this.offset(index), this.length(index));
  }

  ecn(index: number): number {
    const base = this.#entryOf[index]! * RECV_META_STRIDE;
    return (this.#meta[base + RECV_META_FLAGS]! & RECV_FLAG_TOS) === 0 ? 0 : this.#meta[base + RECV_META_TOS]! & 0b11;
  }

  source(index: number): SocketAddr {
    const base = this.#entryOf[index]! * RECV_META_STRIDE;
    const port = this.#metaView.getUint16(base + RECV_META_SRC_PORT, true);
    return this.#codec.decode(this.#meta, base + RECV_META_SRC_IP, this.family, port);
  }

  destination(index: number): SocketAddr {
    const base = this.#entryOf[index]! * RECV_META_STRIDE;
    return this.#codec.decode(this.#meta, base + RECV_META_DST_IP, this.family, this.port);
  }

  /**
   * Queues a datagram. Returns false (counted as a drop) when the destination's family is not
   * this socket's or the payload does not fit a slot.
   */
  send(payload: Uint8Array, destination: SocketAddr, source?: SocketAddr, ecn = 0): boolean {
    if (this.#poller === undefined || destination.family !== this.family || payload.length > this.#sendSlotSize) {
      this.counters.txDropped++;
      return false;
    }
    if (this.#sendQueued === this.#sendCapacity) this.flush();
    const index = this.#sendQueued;
    const offset = index * this.#sendSlotSize;
    this.#sendRing.set(payload, offset);
    const base = index * SEND_META_STRIDE;
    const view = this.#sendMetaView;
    view.setUint32(base + SEND_META_OFFSET, offset, true);
    view.setUint32(base + SEND_META_LENGTH, payload.length, true);
    view.setUint16(base + SEND_META_DST_PORT, destination.port, true);
    this.#sendMeta[base + SEND_META_FAMILY] = this.family;
    const encoded =
      this.#codec.encode(destination.address, this.family, this.#sendMeta, base + SEND_META_DST_IP) &&
      (source === undefined || (source.family === this.family && this.#codec.encode(source.address, this.family, this.#sendMeta, base + SEND_META_SRC_IP)));
    if (!encoded) {
      this.counters.txDropped++;
      return false;
    }
    this.#sendMeta[base + SEND_META_HAS_SRC] = source === undefined ? 0 : 1;
    this.#sendMeta[base + SEND_META_TOS] = ecn & 0b11;
    this.#sendQueued++;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
    return true;
  }

  /** Sends everything queued now; returns how many datagrams the kernel accepted. */
  flush(): number {
    const queued = this.#sendQueued;
    if (queued === 0 || this.#poller === undefined) return 0;
    this.#sendQueued = 0;
    const status = this.#sendStatus;
    const sent = this.#native.udpSendBatch(this.#fd, this.#sendRing, this.#sendMeta, queued, this.#gso, status);
    const counters = this.counters;
    counters.txDatagrams += sent;
    counters.txGsoSends += status[0]!;
    if (status[1] !== 0) {
      this.#gso = false;
      logger.info('UDP segmentation offload refused; sending datagram by datagram', { errno: status[1] });
    }
    if (sent === queued) {
      for (let i = 0; i < queued; i++) {
        counters.txBytes += this.#sendMetaView.getUint32(i * SEND_META_STRIDE + SEND_META_LENGTH, true);
      }
      return sent;
    }
    let lastErrno = 0;
    for (let i = 0; i < queued; i++) {
      const base = i * SEND_META_STRIDE;
      const errno = this.#sendMetaView.getInt32(base + SEND_META_ERRNO, true);
      if (errno === 0) {
        counters.txBytes += this.#sendMetaView.getUint32(base + SEND_META_LENGTH, true);
        continue;
      }
      counters.txDropped++;
      if (errno === EAGAIN) counters.txWouldBlock++;
      lastErrno = errno;
    }
    this.lastSendErrno = lastErrno;
    this.onSendError?.(lastErrno);
    return sent;
  }

  close(): void {
    if (this.#poller === undefined) return;
    this.flush();
    this.#native.pollerStop(this.#poller);
    this.#poller = undefined;
    this.#native.closeFd(this.#fd);
  }

  get closed(): boolean {
    return this.#poller === undefined;
  }

  #onReadable(received: number, errno: number): void {
    const counters = this.counters;
    if (errno !== 0) {
      counters.rxErrors++;
      if (logger.enabled(Level.Debug)) logger.debug('Failed to receive on UDP socket', { errno });
    }
    if (received === 0) return;
    const meta = this.#meta;
    const view = this.#metaView;
    let kept = 0;
    for (let entry = 0; entry < received; entry++) {
      const base = entry * RECV_META_STRIDE;
      const flags = meta[base + RECV_META_FLAGS]!;
      const length = view.getUint32(base + RECV_META_LENGTH, true);
      if ((flags & RECV_FLAG_TRUNCATED) !== 0 || length > this.#maxPayloadSize) {
        counters.rxOversized++;
        continue;
      }
      if ((flags & RECV_FLAG_PKTINFO) === 0 || meta[base + RECV_META_FAMILY] !== this.family) {
        counters.rxWithoutPktinfo++;
        continue;
      }
      if ((flags & RECV_FLAG_COALESCED) !== 0) counters.rxCoalesced++;
      counters.rxBytes += length;
      this.#entryOf[kept++] = entry;
    }
    counters.rxDatagrams += kept;
    counters.rxBatches++;
    if (kept === 0) return;
    this.count = kept;
    this.#onDatagrams(this);
  }
}

export interface DataPlaneSockets {
  readonly v4: UdpSocket | undefined;
  readonly v6: UdpSocket | undefined;
}

export type SendOutcome = 'queued' | 'notConnected' | 'dropped';

/**
 * Queues a transmit on the socket of its destination's family. `notConnected` when that family
 * has no socket (the reference's `NotConnected` error for that datagram).
 */
export function sendTransmit(
  sockets: { readonly v4: DatagramSocket | undefined; readonly v6: DatagramSocket | undefined },
  transmit: Transmit,
): SendOutcome {
  const socket = transmit.destination.family === 4 ? sockets.v4 : sockets.v6;
  if (socket === undefined) return 'notConnected';
  return socket.send(transmit.payload, transmit.destination, transmit.source, transmit.ecn) ? 'queued' : 'dropped';
}

/**
 * Binds `0.0.0.0:52625` and `[::]:52625` (each falling back to an ephemeral port), logging
 * like the reference: a family that cannot bind is skipped, buffer sizes are reported.
 */
export function bindDataPlaneSockets(
  options: Omit<UdpSocketOptions, 'family' | 'address'>,
): DataPlaneSockets {
  const bindFamily = (family: 4 | 6): UdpSocket | undefined => {
    try {
      const socket = UdpSocket.bind({ ...options, family });
      const requested = options.receiveBufferSize ?? RECEIVE_BUFFER_SIZE;
      const requestedSend = options.sendBufferSize ?? SEND_BUFFER_SIZE;
      if (socket.bufferErrno !== 0) {
        logger.warn('Failed to set socket buffer sizes', { errno: socket.bufferErrno });
      } else {
        logger.info('Set UDP socket buffer sizes', {
          requested_send_buffer_size: requestedSend,
          send_buffer_size: socket.sendBufferSize,
          requested_recv_buffer_size: requested,
          recv_buffer_size: socket.receiveBufferSize,
        });
      }
      if (options.offloads === true) logger.info('UDP offloads', { family, gro: socket.gro, gso: socket.gso });
      return socket;
    } catch (error) {
      logger.info(`Failed to bind IPv${family} socket`, { error: error as Error });
      return undefined;
    }
  };
  const v4 = bindFamily(4);
  const v6 = bindFamily(6);
  if (v4 === undefined && v6 === undefined) logger.error('No available UDP sockets');
  return { v4, v6 };
}

/**
 * The in-memory twin of `UdpSocket` for tests and simulations: `deliver()` plays the kernel
 * receiving datagrams (one batch), `sent` collects copies of what was sent, with the source the
 * caller asked for.
 */
export class MemoryUdpSocket implements DatagramSocket, UdpDatagramBatch {
  readonly family: 4 | 6;
  readonly port: number;
  readonly counters: UdpCounters = emptyUdpCounters();
  readonly sent: { payload: Uint8Array; destination: SocketAddr; source: SocketAddr | undefined; ecn: number }[] = [];
  readonly buffer = new Uint8Array(0);
  count = 0;

  readonly #onDatagrams: UdpDatagramsHandler;
  #batch: readonly { payload: Uint8Array; source: SocketAddr; destination: SocketAddr; ecn: number }[] = [];
  #closed = false;

  constructor(options: { family: 4 | 6; port?: number; onDatagrams: UdpDatagramsHandler }) {
    this.family = options.family;
    this.port = options.port ?? DATA_PLANE_PORT;
    this.#onDatagrams = options.onDatagrams;
  }

  offset(): number {
    return 0;
  }

  length(index: number): number {
    return this.#batch[index]!.payload.length;
  }

  payload(index: number): Uint8Array {
    return this.#batch[index]!.payload;
  }

  source(index: number): SocketAddr {
    return this.#batch[index]!.source;
  }

  destination(index: number): SocketAddr {
    return this.#batch[index]!.destination;
  }

  ecn(index: number): number {
    return this.#batch[index]!.ecn;
  }

  /** Delivers datagrams as one batch; `destinationIp` is the local address they were sent to, `ecn` their outer ECN bits. */
  deliver(datagrams: readonly { payload: Uint8Array; source: SocketAddr; destinationIp: string; ecn?: number }[]): void {
    if (this.#closed) return;
    const batch = [];
    for (const d of datagrams) {
      if (d.payload.length > MAX_DATAGRAM_PAYLOAD) {
        this.counters.rxOversized++;
        continue;
      }
      batch.push({ payload: d.payload, source: d.source, destination: socketAddr(d.destinationIp, this.port), ecn: d.ecn ?? 0 });
      this.counters.rxDatagrams++;
      this.counters.rxBytes += d.payload.length;
    }
    this.counters.rxBatches++;
    this.#batch = batch;
    this.count = batch.length;
    if (this.count > 0) this.#onDatagrams(this);
  }

  send(payload: Uint8Array, destination: SocketAddr, source?: SocketAddr, ecn = 0): boolean {
    if (this.#closed || destination.family !== this.family) {
      this.counters.txDropped++;
      return false;
    }
    this.sent.push({ payload: payload.slice(), destination, source, ecn: ecn & 0b11 });
    this.counters.txDatagrams++;
    this.counters.txBytes += payload.length;
    return true;
  }

  flush(): number {
    return 0;
  }

  close(): void {
    this.#closed = true;
  }
}

/** Endpoints each cache of `AddressCodec` keeps: room for ten thousand clients' and relays' addresses. */
export const CODEC_CACHE_LIMIT = 16_384;

/**
 * Converts between raw address bytes and `SocketAddr` without per-datagram allocation for
 * endpoints seen before: decoded endpoints and encoded address texts are cached. Each cache is
 * bounded; when full, a new entry evicts the oldest one (insertion order), never the whole cache,
 * so a new endpoint costs the others nothing.
 */
export class AddressCodec {
  readonly #v4 = new Map<number, SocketAddr>();
  readonly #v6 = new Map<number, { readonly bytes: Uint8Array; readonly addr: SocketAddr }>();
  readonly #encoded = new Map<string, Uint8Array>();

  /** Reads a 4- or 16-byte address at `offset` in `bytes`. */
  decode(bytes: Uint8Array, offset: number, family: 4 | 6, port: number): SocketAddr {
    if (family === 4) {
      const ip = ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
      const key = ip * 65536 + port;
      let addr = this.#v4.get(key);
      if (addr === undefined) {
        if (this.#v4.size >= CODEC_CACHE_LIMIT) evictOldest(this.#v4);
        addr = socketAddr(formatIpv4(ip), port);
        this.#v4.set(key, addr);
      }
      return addr;
    }
    let hash = 0x811c9dc5 ^ port;
    for (let i = 0; i < 16; i++) hash = Math.imul(hash ^ bytes[offset + i]!, 0x01000193);
    const key = (hash >>> 0) * 65536 + port;
    const entry = this.#v6.get(key);
    if (entry !== undefined && entry.addr.port === port && equalBytes(entry.bytes, bytes, offset)) return entry.addr;
    if (this.#v6.size >= CODEC_CACHE_LIMIT) evictOldest(this.#v6);
    const copy = bytes.slice(offset, offset + 16);
    // The socket style, so it equals what Node and the kernel report for the same peer.
    const addr = socketAddr(formatIpv6InetNtop(copy), port);
    this.#v6.set(key, { bytes: copy, addr });
    return addr;
  }

  /** Writes `address` (textual, of `family`) into `target` at `offset`; false when it is not an address of that family. */
  encode(address: string, family: 4 | 6, target: Uint8Array, offset: number): boolean {
    let bytes = this.#encoded.get(address);
    if (bytes === undefined) {
      const parsed = new Uint8Array(family === 4 ? 4 : 16);
      if (!writeIpText(address, family, parsed, 0)) return false;
      if (this.#encoded.size >= CODEC_CACHE_LIMIT) evictOldest(this.#encoded);
      this.#encoded.set(address, (bytes = parsed));
    }
    target.set(bytes, offset);
    return true;
  }
}

function evictOldest<K, V>(cache: Map<K, V>): void {
  for (const key of cache.keys()) {
    cache.delete(key);
    return;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array, offset: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[offset + i]) return false;
  return true;
}
