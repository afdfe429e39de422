/**
 * Loads the N-API addon built from `native/` (see native/README.md for the byte layouts).
 * The addon holds no protocol state: it opens descriptors, polls them through libuv and moves
 * batches of packets between the kernel and buffers that JavaScript owns.
 */
import { createRequire } from 'node:module';
import { isIPv6, Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const POLLER_TUN = 0;
export const POLLER_UDP = 1;
/** A UDP socket with UDP_GRO: 64 KiB slots, each possibly holding many datagrams (one meta entry each). */
export const POLLER_UDP_GRO = 2;
/** A TUN queue with IFF_VNET_HDR: reads split into MTU-sized packets in native code. */
export const POLLER_TUN_VNET = 3;
/** TUN offload bits (`tunOpen(...).offloads`), as in linux/if_tun.h. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** Most datagrams one GRO receive holds (the kernel's UDP_GRO_CNT_MAX), and its buffer. */
export const GRO_MAX_SEGMENTS = 64;
export const GRO_BUFFER = 65536;

/** Receive metadata per datagram (byte offsets, little-endian). */
export const RECV_META_STRIDE = 64;
export const RECV_META_LENGTH = 0;
export const RECV_META_FAMILY = 4;
export const RECV_META_FLAGS = 5;
export const RECV_META_SRC_PORT = 6;
export const RECV_META_SRC_IP = 8;
export const RECV_META_DST_IP = 24;
export const RECV_META_IFINDEX = 40;
/** Where the datagram starts in the ring. */
export const RECV_META_OFFSET = 44;
/** The IP TOS / traffic class byte (ECN in its low two bits), valid with RECV_FLAG_TOS. */
export const RECV_META_TOS = 48;
/** u16: the GRO segment size of the receive this datagram came in (0 when not coalesced). */
export const RECV_META_SEGMENT_SIZE = 50;
export const RECV_FLAG_PKTINFO = 1;
export const RECV_FLAG_TRUNCATED = 2;
export const RECV_FLAG_TOS = 4;
export const RECV_FLAG_COALESCED = 8;

/** Send metadata per datagram (byte offsets, little-endian). */
export const SEND_META_STRIDE = 64;
export const SEND_META_OFFSET = 0;
export const SEND_META_LENGTH = 4;
export const SEND_META_DST_PORT = 8;
export const SEND_META_FAMILY = 10;
export const SEND_META_HAS_SRC = 11;
export const SEND_META_DST_IP = 12;
export const SEND_META_SRC_IP = 28;
export const SEND_META_ERRNO = 44;
/** The TOS / traffic class byte to send with (IP_TOS / IPV6_TCLASS); 0 sends none. */
export const SEND_META_TOS = 48;

/** Largest batch the addon handles in one poll wake-up or one sendmmsg. */
export const MAX_BATCH = 256;

declare const pollerBrand: unique symbol;
export type PollerHandle = { readonly [pollerBrand]: true };
declare const tunWriterBrand: unique symbol;
export type TunWriterHandle = { readonly [tunWriterBrand]: true };
declare const keyringBrand: unique symbol;
export type AeadKeyringHandle = { readonly [keyringBrand]: true };

/** `tunWriterStats` fills a Float64Array of this many entries, in this order. */
export const TUN_WRITER_STATS_LENGTH = 6;
export const TUN_WRITER_STAT_WRITTEN = 0;
export const TUN_WRITER_STAT_WRITTEN_BYTES = 1;
export const TUN_WRITER_STAT_ERRORS = 2;
export const TUN_WRITER_STAT_LAST_ERRNO = 3;
export const TUN_WRITER_STAT_QUEUED = 4;
/** Writes that carried two or more merged TCP segments (IFF_VNET_HDR only). */
export const TUN_WRITER_STAT_COALESCED = 5;

export interface UdpOpenResult {
  readonly fd: number;
  readonly port: number;
  readonly receiveBufferSize: number;
  readonly sendBufferSize: number;
  /** errno of a failed SO_RCVBUF/SO_SNDBUF request, 0 when both were accepted. */
  readonly bufferErrno: number;
  /** errno of a failed SO_MARK, 0 when set (or not requested). */
  readonly markErrno: number;
  /** 1 when UDP_GRO is on (only tried with `offloads`). */
  readonly gro: number;
  /** 1 when sends may carry UDP_SEGMENT (only probed with `offloads`). */
  readonly gso: number;
  /** errno of a failed IP_RECVTOS / IPV6_RECVTCLASS, 0 when on. */
  readonly tosErrno: number;
}

/** A native error carries the errno name as `code` (`EADDRINUSE`, `EBUSY`, ...). */
export interface NativeError extends Error {
  readonly code: string;
  readonly errno: number;
}

export interface NativeAddon {
  /**
   * Opens `queues` fds of the TUN device. With `offloads`: IFF_VNET_HDR, and `offloads` in the
   * result has the TUN_F_* bits the kernel took (checksum, TSO, USO).
   */
  tunOpen(name: string, queues: number, offloads?: boolean): { name: string; fds: number[]; vnet: number; offloads: number };
  /** Returns 0 or the errno of the failed write. `vnet`: the fd has IFF_VNET_HDR (a zero header goes first). */
  tunWrite(fd: number, packet: Uint8Array, vnet?: boolean): number;
  /**
   * `spans` holds (offset, length) pairs into `buffer`; returns how many packets were written.
   * A failed packet's pair is overwritten with (errno, 0).
   */
  tunWriteBatch(fd: number, buffer: Uint8Array, spans: Uint32Array, count: number, vnet?: boolean): number;
  /**
   * Starts a writer thread for `fd` with a ring of `slots` (rounded up to a power of two) x `slotSize` bytes.
   * With `vnet` the thread merges consecutive TCP segments of a flow into one GSO write (and with
   * `mergeUdp`, for a device that took USO, consecutive UDP datagrams of a flow).
   */
  tunWriterStart(fd: number, slots: number, slotSize: number, vnet?: boolean, mergeUdp?: boolean): TunWriterHandle;
  /** Copies the packet into the ring; 0 when queued, else ENOBUFS (ring full), EMSGSIZE or EPIPE (stopped). */
  tunWriterPush(writer: TunWriterHandle, packet: Uint8Array): number;
  /** Like `tunWriteBatch` but queues; returns how many were queued, a refused pair becomes (errno, 0). */
  tunWriterPushBatch(writer: TunWriterHandle, buffer: Uint8Array, spans: Uint32Array, count: number): number;
  /** Fills `out` (TUN_WRITER_STATS_LENGTH entries): written, written bytes, write errors, last errno, queued. */
  tunWriterStats(writer: TunWriterHandle, out: Float64Array): void;
  /** Lets the thread write what is queued, then joins it (idempotent). Call before closing the fd. */
  tunWriterStop(writer: TunWriterHandle): void;
  udpOpen(
    family: 4 | 6,
    address: string,
    port: number,
    receiveBufferSize: number,
    sendBufferSize: number,
    mark: number,
    offloads?: boolean,
  ): UdpOpenResult;
  /**
   * Returns how many datagrams were sent; each meta entry gets its errno (0 = sent). With `gso`,
   * runs of datagrams to one destination go out as UDP_SEGMENT sends; `status` gets the number of
   * GSO sends and the errno of a GSO send the kernel refused (then resent one by one).
   */
  udpSendBatch(fd: number, buffer: Uint8Array, meta: Uint8Array, count: number, gso?: boolean, status?: Int32Array): number;
  /** Returns 0 or errno. */
  setMark(fd: number, mark: number): number;
  tcpSocket(family: 4 | 6, mark: number): { fd: number; markErrno: number };
  closeFd(fd: number): void;
  pollerStart(
    fd: number,
    kind: typeof POLLER_TUN | typeof POLLER_UDP | typeof POLLER_UDP_GRO | typeof POLLER_TUN_VNET,
    ring: Uint8Array,
    slotSize: number,
    headroom: number,
    slots: number,
    meta: Uint8Array,
    callback: (count: number, errno: number) => void,
  ): PollerHandle;
  pollerStop(handle: PollerHandle): void;
  /** A set of transport keys, each an initialised OpenSSL ChaCha20-Poly1305 context; freed with the handle. */
  aeadKeyringCreate(): AeadKeyringHandle;
  /** Copies a 32-byte key into a new context; returns its id (slot index and a generation byte). */
  aeadKeyAdd(ring: AeadKeyringHandle, key: Uint8Array, seal: boolean): number;
  /** Frees (and so wipes) a key's context; false when the id names no live key. */
  aeadKeyRemove(ring: AeadKeyringHandle, id: number): boolean;
  aeadKeyCount(ring: AeadKeyringHandle): number;
  /**
   * Test entry to the TUN read path's splitting: `frame` is a virtio header and a packet; segments
   * go `stride` bytes apart into `out` (at most `maxLength` each) with their lengths. Returns the
   * segment count, -1 for a malformed frame, -2 when out or lengths are too small.
   */
  offloadSplit(frame: Uint8Array, out: Uint8Array, stride: number, maxLength: number, lengths: Uint32Array): number;
  /**
   * Test entry to the TUN writer's merging: the packets at `spans` (count pairs, plus one pair of
   * room) that the writer would merge into its first write go into `frame`; returns how many, and
   * the frame's length lands in spans[2 * count].
   */
  offloadCoalesce(buffer: Uint8Array, spans: Uint32Array, count: number, frame: Uint8Array, udp?: boolean): number;
  /** Runs a batch of AEAD jobs (layout in src/wireguard/transport-cipher.ts); returns how many succeeded. */
  aeadRun(ring: AeadKeyringHandle, open: boolean, source: Uint8Array, target: Uint8Array, jobs: Uint32Array, count: number): number;
}

const ADDON_PATH = fileURLToPath(new URL('../../build/Release/firezone_native.node', import.meta.url));

let addon: NativeAddon | undefined;

export function nativeAddonPath(): string {
  return ADDON_PATH;
}

export function isNativeAddonBuilt(): boolean {
  return existsSync(ADDON_PATH);
}

export function loadNative(): NativeAddon {
  if (addon !== undefined) return addon;
  if (!isNativeAddonBuilt()) {
    throw new Error(
      `native addon not built: ${ADDON_PATH} is missing. ` +
        'Run `npm ci` (builds it with node-gyp) or `npm run build:native`.',
    );
  }
  addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  return addon;
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'string';
}

/**
 * Starts a TCP connection whose socket carries SO_MARK `mark` from the first SYN, so it bypasses
 * the tunnel routing table like the reference's own sockets. Falls back to an unmarked socket when
 * the addon is missing or the mark is refused. Use it as ws's `createConnection` or directly.
 */
export function connectMarkedTcp(options: { host: string; port: number; mark: number }): Socket {
  return markedTcpSocket(isIPv6(options.host) ? 6 : 4, options.mark).connect({ host: options.host, port: options.port });
}

/** An unconnected TCP socket carrying SO_MARK `mark` (a plain socket when the addon is missing). */
export function markedTcpSocket(family: 4 | 6, mark: number): Socket {
  if (!isNativeAddonBuilt()) return new Socket();
  const { fd } = loadNative().tcpSocket(family, mark);
  return new Socket({ fd, readable: true, writable: true });
}
