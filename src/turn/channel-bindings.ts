// Channel numbers and their timers (connectivity spec §4.6). A channel is usable for
// sending while bound and younger than its lifetime; it is re-bound at half its lifetime
// only if data arrived on it since the last bind; its number may go to another peer only
// after lifetime + cooldown without traffic.
import type { SocketAddr } from '../util/socket-addr.ts';
import { sameSocketAddr } from '../util/socket-addr.ts';
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
}

export class ChannelBindings {
  private readonly byNumber = new Map<number, Channel>();
  private nextNumber = FIRST_CHANNEL;
  private cachedPeer: SocketAddr | undefined;
  private cachedChannel: Channel | undefined;

  get(number: number): Channel | undefined {
    return this.byNumber.get(number);
  }

  /** The channel bound to `peer` that may carry data now. */
  usableChannelTo(peer: SocketAddr, now: number): Channel | undefined {
    const cached = this.cachedChannel;
    if (peer === this.cachedPeer && cached !== undefined && this.byNumber.get(cached.number) === cached && isUsable(cached, now)) {
      return cached;
    }
    for (const channel of this.byNumber.values()) {
      if (isUsable(channel, now) && sameSocketAddr(channel.peer, peer)) {
        this.cachedPeer = peer;
        this.cachedChannel = channel;
        return channel;
      }
    }
    return undefined;
  }

  /**
   * A channel number for a new bind to `peer`: the peer's own number while it is still
   * reserved for it, else the next free or re-bindable one. Undefined when all are taken.
   */
  reserve(peer: SocketAddr, now: number): Channel | undefined {
    for (const channel of this.byNumber.values()) {
      if (
        channel.bound &&
        sameSocketAddr(channel.peer, peer) &&
        now - channel.boundAt < CHANNEL_LIFETIME + CHANNEL_REBIND_COOLDOWN
      ) {
        return channel;
      }
    }
    const number = this.findFreeNumber(now);
    if (number === undefined) return undefined;
    this.nextNumber = number === LAST_CHANNEL ? FIRST_CHANNEL : number + 1;
    const channel: Channel = { number, peer, bound: false, boundAt: now, lastReceivedAt: now };
    this.byNumber.set(number, channel);
    return channel;
  }

  confirm(number: number, now: number): boolean {
    const channel = this.byNumber.get(number);
    if (channel === undefined) return false;
    channel.bound = true;
    channel.boundAt = now;
    channel.lastReceivedAt = now;
    return true;
  }

  remove(number: number): void {
    this.byNumber.delete(number);
  }

  clear(): void {
    this.byNumber.clear();
    this.cachedPeer = undefined;
    this.cachedChannel = undefined;
  }

  /** Channels that carried data since their last bind and are old enough to re-bind. */
  needingRefresh(now: number): Channel[] {
    const due: Channel[] = [];
    for (const channel of this.byNumber.values()) if (needsRefresh(channel, now)) due.push(channel);
    return due;
  }

  /** The earliest instant a channel will need re-binding, if any channel carried data. */
  nextRefreshAt(): number | undefined {
    let earliest: number | undefined;
    for (const channel of this.byNumber.values()) {
      if (!hasActivity(channel)) continue;
      const at = channel.boundAt + CHANNEL_REFRESH_AFTER;
      if (earliest === undefined || at < earliest) earliest = at;
    }
    return earliest;
  }

  [Symbol.iterator](): IterableIterator<Channel> {
    return this.byNumber.values();
  }

  private findFreeNumber(now: number): number | undefined {
    for (let i = 0; i <= LAST_CHANNEL - FIRST_CHANNEL; i++) {
      const number = FIRST_CHANNEL + ((this.nextNumber - FIRST_CHANNEL + i) % (LAST_CHANNEL - FIRST_CHANNEL + 1));
      const channel = this.byNumber.get(number);
      if (channel === undefined || canRebind(channel, now)) return number;
    }
    return undefined;
  }
}

/** Records traffic on a bound channel. Returns false for an unknown or unconfirmed channel. */
export function recordReceived(channel: Channel | undefined, now: number): channel is Channel {
  if (channel === undefined || !channel.bound) return false;
  channel.lastReceivedAt = now;
  return true;
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
