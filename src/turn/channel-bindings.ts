// Channel numbers and their timers (connectivity spec §4.6). A channel is usable for
// sending while bound and younger than its lifetime; it is re-bound at half its lifetime
// only if data arrived on it since the last bind; its number may go to another peer only
// after lifetime + cooldown without traffic.
//
// A gateway relays thousands of peers through one allocation, so nothing here scans the
// channels: peers and numbers are map keys, and re-bind deadlines live in a heap.
import { DeadlineQueue } from '../util/deadline-queue.ts';
import { EndpointMap } from '../util/endpoint-map.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import {
  CHANNEL_LIFETIME,
  CHANNEL_REBIND_COOLDOWN,
  CHANNEL_REFRESH_AFTER,
  FIRST_CHANNEL,
  LAST_CHANNEL,
} from './constants.ts';

export interface Channel {
  readonly number: number;
  readonly peer: SocketAddr;
  bound: boolean;
  boundAt: number;
  lastReceivedAt: number;
  /** A ChannelBind for this number is outstanding. */
  bindInFlight: boolean;
}

const CHANNEL_COUNT = LAST_CHANNEL - FIRST_CHANNEL + 1;

export class ChannelBindings {
  private readonly byNumber = new Map<number, Channel>();
  /** The channel most recently reserved for each peer. */
  private readonly byPeer = new EndpointMap<Channel>();
  /** Bound channels by the instant they become due for a re-bind. */
  private readonly refreshes = new DeadlineQueue<Channel>();
  private nextNumber = FIRST_CHANNEL;
  /** After a search found every number taken: no number frees up before this instant. */
  private exhaustedUntil = -Infinity;

  get size(): number {
    return this.byNumber.size;
  }

  get(number: number): Channel | undefined {
    return this.byNumber.get(number);
  }

  /** The channel bound to `peer` that may carry data now. */
  usableChannelTo(peer: SocketAddr, now: number): Channel | undefined {
    const channel = this.byPeer.get(peer);
    return channel !== undefined && isUsable(channel, now) ? channel : undefined;
  }

  /** The channel reserved for `peer` (bound or not). */
  channelOf(peer: SocketAddr): Channel | undefined {
    return this.byPeer.get(peer);
  }

  /**
   * A channel number for a new bind to `peer`: the peer's own number while it is still
   * reserved for it, else the next free or re-bindable one. Undefined when all are taken.
   */
  reserve(peer: SocketAddr, now: number): Channel | undefined {
    const own = this.byPeer.get(peer);
    if (own !== undefined && own.bound && now - own.boundAt < CHANNEL_LIFETIME + CHANNEL_REBIND_COOLDOWN) return own;
    const number = this.findFreeNumber(now);
    if (number === undefined) return undefined;
    this.nextNumber = number === LAST_CHANNEL ? FIRST_CHANNEL : number + 1;
    const previous = this.byNumber.get(number);
    if (previous !== undefined) this.forget(previous);
    const channel: Channel = { number, peer, bound: false, boundAt: now, lastReceivedAt: now, bindInFlight: false };
    this.byNumber.set(number, channel);
    this.byPeer.set(peer, channel);
    return channel;
  }

  confirm(number: number, now: number): boolean {
    const channel = this.byNumber.get(number);
    if (channel === undefined) return false;
    channel.bound = true;
    channel.boundAt = now;
    channel.lastReceivedAt = now;
    this.refreshes.set(channel, now + CHANNEL_REFRESH_AFTER);
    return true;
  }

  remove(number: number): void {
    const channel = this.byNumber.get(number);
    if (channel !== undefined) this.forget(channel);
  }

  clear(): void {
    this.byNumber.clear();
    this.byPeer.clear();
    this.refreshes.clear();
    this.exhaustedUntil = -Infinity;
  }

  /**
   * Records data received on channel `number`. Returns the channel, or undefined for an
   * unknown or unconfirmed one. A channel past its re-bind time gets due at once.
   */
  received(number: number, now: number): Channel | undefined {
    const channel = this.byNumber.get(number);
    if (channel === undefined || !channel.bound) return undefined;
    channel.lastReceivedAt = now;
    if (!channel.bindInFlight && now - channel.boundAt >= CHANNEL_REFRESH_AFTER && !this.refreshes.has(channel)) {
      this.refreshes.set(channel, now);
    }
    return channel;
  }

  /**
   * The next channel that carried data since its last bind and is old enough to re-bind,
   * removed from the schedule (a confirmed bind puts it back). Channels without traffic
   * leave the schedule here and lapse.
   */
  popRefreshDue(now: number): Channel | undefined {
    for (let channel = this.refreshes.popDue(now); channel !== undefined; channel = this.refreshes.popDue(now)) {
      if (needsRefresh(channel, now)) return channel;
    }
    return undefined;
  }

  /** Puts a channel back on the re-bind schedule (a re-bind failed). */
  retryRefreshAt(channel: Channel, at: number): void {
    if (this.byNumber.get(channel.number) === channel && channel.bound) this.refreshes.set(channel, at);
  }

  /** The earliest instant a channel may need re-binding (Infinity when none). */
  nextRefreshAt(): number {
    return this.refreshes.peekTime();
  }

  [Symbol.iterator](): IterableIterator<Channel> {
    return this.byNumber.values();
  }

  private forget(channel: Channel): void {
    this.byNumber.delete(channel.number);
    this.byPeer.deleteIf(channel.peer, channel);
    this.refreshes.delete(channel);
    this.exhaustedUntil = -Infinity;
  }

  private findFreeNumber(now: number): number | undefined {
    if (this.byNumber.size < CHANNEL_COUNT) {
      for (let i = 0; i < CHANNEL_COUNT; i++) {
        const number = FIRST_CHANNEL + ((this.nextNumber - FIRST_CHANNEL + i) % CHANNEL_COUNT);
        if (!this.byNumber.has(number)) return number;
      }
    }
    if (now < this.exhaustedUntil) return undefined;
    let reusableAt = Infinity;
    for (let i = 0; i < CHANNEL_COUNT; i++) {
      const number = FIRST_CHANNEL + ((this.nextNumber - FIRST_CHANNEL + i) % CHANNEL_COUNT);
      const channel = this.byNumber.get(number)!;
      if (canRebind(channel, now)) return number;
      if (!hasActivity(channel)) reusableAt = Math.min(reusableAt, channel.boundAt + CHANNEL_LIFETIME + CHANNEL_REBIND_COOLDOWN);
    }
    this.exhaustedUntil = reusableAt;
    return undefined;
  }
}

function isUsable(channel: Channel, now: number): boolean {
  return channel.bound && now - channel.boundAt < CHANNEL_LIFETIME;
}

function hasActivity(channel: Channel): boolean {
  return channel.lastReceivedAt !== channel.boundAt;
}

function needsRefresh(channel: Channel, now: number): boolean {
  return hasActivity(channel) && now - channel.boundAt >= CHANNEL_REFRESH_AFTER;
}

function canRebind(channel: Channel, now: number): boolean {
  return !hasActivity(channel) && now - channel.boundAt >= CHANNEL_LIFETIME + CHANNEL_REBIND_COOLDOWN;
}
