/**
 * Deliberately broken gateways, only for proving that the simulation's invariants catch real bugs.
 * Each one wraps the real GatewayState and bends exactly one rule.
 */
import { GatewayState, TunAction, TunnelAction, type TunnelVerdict, type TunVerdict } from '../../src/gateway/index.ts';
import type { ClientInfo, ResourceDescription } from '../../src/gateway/types.ts';

/** Lets TCP to port 443 through whatever the filters say (a "helpful" hard-coded exception). */
export class Port443AlwaysOpen extends GatewayState {
  override handleTunnelPacket(clientId: string, packet: Uint8Array, now: number, outerCe?: boolean): TunnelVerdict {
    const verdict = super.handleTunnelPacket(clientId, packet, now, outerCe);
    if (verdict.action === TunnelAction.ReplyToClient && isTcpToPort(packet, 443)) {
      verdict.action = TunnelAction.ToTun;
      verdict.packet = packet;
    }
    return verdict;
  }
}

/** Forwards anything addressed to a known client's tunnel IP, skipping the filters on the way back. */
export class UnfilteredReplies extends GatewayState {
  private readonly owners = new Map<string, string>();

  override authorizeFlow(client: ClientInfo, resource: ResourceDescription, expiresAt: number | undefined, now: number): ReturnType<GatewayState['authorizeFlow']> {
    const result = super.authorizeFlow(client, resource, expiresAt, now);
    if (result.ok) {
      this.owners.set(addressKey(client.ipv4), client.id);
      this.owners.set(addressKey(client.ipv6), client.id);
    }
    return result;
  }

  override handleTunPacket(packet: Uint8Array, now: number): TunVerdict {
    const verdict = super.handleTunPacket(packet, now);
    if (verdict.action !== TunAction.Drop) return verdict;
    const v4 = packet[0]! >> 4 === 4;
    const destination = v4 ? packet.subarray(16, 20) : packet.subarray(24, 40);
    const owner = this.owners.get(Buffer.from(destination).toString('hex'));
    if (owner === undefined || !this.hasClient(owner)) return verdict;
    verdict.action = TunAction.ToClient;
    verdict.clientId = owner;
    verdict.packet = packet;
    return verdict;
  }
}

/** Translates DNS-resource answers back to the proxy IP but one port off (a NAT off-by-one). */
export class NatPortOffByOne extends GatewayState {
  override handleTunPacket(packet: Uint8Array, now: number): TunVerdict {
    const verdict = super.handleTunPacket(packet, now);
    if (verdict.action !== TunAction.ToClient || !isFromProxy(verdict.packet)) return verdict;
    const out = verdict.packet;
    const v4 = out[0]! >> 4 === 4;
    const l4 = v4 ? (out[0]! & 0x0f) * 4 : 40;
    const protocol = v4 ? out[9] : out[6];
    if (protocol !== 6 && protocol !== 17) return verdict;
    const port = ((out[l4 + 2]! << 8) | out[l4 + 3]!) + 1;
    out[l4 + 2] = (port >> 8) & 0xff;
    out[l4 + 3] = port & 0xff;
    return verdict;
  }
}

/** Drops `expires_at`: access never ends by itself. */
export class ExpiryIgnored extends GatewayState {
  override authorizeFlow(client: ClientInfo, resource: ResourceDescription, _expiresAt: number | undefined, now: number): ReturnType<GatewayState['authorizeFlow']> {
    return super.authorizeFlow(client, resource, undefined, now);
  }
}

/** Ignores `reject_access`: access outlives its revocation. */
export class RejectIgnored extends GatewayState {
  override rejectAccess(): void {}
}

/** The 1.4.13 Internet resource: private, link-local and other special ranges behind the gateway reachable. */
export class InternetReachesPrivateRanges extends GatewayState {
  override handleTunnelPacket(clientId: string, packet: Uint8Array, now: number, outerCe?: boolean): TunnelVerdict {
    const verdict = super.handleTunnelPacket(clientId, packet, now, outerCe);
    if (verdict.action !== TunnelAction.ReplyToClient || !isNetworkUnreachable(verdict.packet) || isToProxy(packet)) return verdict;
    verdict.action = TunnelAction.ToTun;
    verdict.packet = packet;
    return verdict;
  }
}

/** Takes no notice of a client's GOODBYE: its authorizations outlive its sign-out. */
export class GoodbyeIgnored extends GatewayState {
  override handleTunnelPacket(clientId: string, packet: Uint8Array, now: number, outerCe?: boolean): TunnelVerdict {
    const isGoodbye = packet.length >= 48 && packet[0]! >> 4 === 6 && packet[6] === 0xff && packet[40] === 2;
    if (!isGoodbye) return super.handleTunnelPacket(clientId, packet, now, outerCe);
    return { action: TunnelAction.Consumed, packet, resourceId: '', domain: undefined, client: undefined };
  }
}

function isNetworkUnreachable(reply: Uint8Array): boolean {
  const v4 = reply[0]! >> 4 === 4;
  const l4 = v4 ? (reply[0]! & 0x0f) * 4 : 40;
  return v4 ? reply[l4] === 3 && reply[l4 + 1] === 0 : reply[l4] === 1 && reply[l4 + 1] === 3;
}

function isToProxy(packet: Uint8Array): boolean {
  if (packet[0]! >> 4 === 4) return packet[16] === 100 && (packet[17]! & 0xe0) === 0x60;
  const prefix = [0xfd, 0x00, 0x20, 0x21, 0x11, 0x11, 0x80, 0x00];
  return prefix.every((byte, i) => packet[24 + i] === byte);
}

function isFromProxy(packet: Uint8Array): boolean {
  if (packet[0]! >> 4 === 4) return packet[12] === 100 && (packet[13]! & 0xe0) === 0x60;
  const prefix = [0xfd, 0x00, 0x20, 0x21, 0x11, 0x11, 0x80, 0x00];
  return prefix.every((byte, i) => packet[8 + i] === byte);
}

function isTcpToPort(packet: Uint8Array, port: number): boolean {
  const v4 = packet[0]! >> 4 === 4;
  const l4 = v4 ? (packet[0]! & 0x0f) * 4 : 40;
  if ((v4 ? packet[9] : packet[6]) !== 6 || packet.length < l4 + 4) return false;
  return ((packet[l4 + 2]! << 8) | packet[l4 + 3]!) === port;
}

function addressKey(ip: ClientInfo['ipv4']): string {
  if (ip.family === 6) return Buffer.from(ip.bytes).toString('hex');
  return ip.value.toString(16).padStart(8, '0');
}
