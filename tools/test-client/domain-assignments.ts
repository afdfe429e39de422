/**
 * The client's half of the p2p control protocol (gateway-core §5.4): an AssignedIps event per
 * (resource, domain), sent through the tunnel and repeated every 2 s until the gateway answers
 * with a DomainStatus. Sans-IO: `now` in ms in, control packets out through `pollPacket`.
 */
import { parseIp, type IpAddr } from '../../src/ip/addr.ts';
import { makeAssignedIpsPacket, type NatStatus } from '../../src/ip/p2p-control.ts';

export const ASSIGNED_IPS_RESEND_MS = 2_000;

export type AssignmentStatus = 'pending' | NatStatus;

export interface Assignment {
  readonly gatewayId: string;
  readonly resourceId: string;
  readonly domain: string;
  readonly proxyIps: readonly string[];
  status: AssignmentStatus;
  sends: number;
  nextSendAt: number;
}

export interface ControlPacket {
  readonly gatewayId: string;
  readonly packet: Uint8Array;
}

export class DomainAssignments {
  private readonly assignments = new Map<string, Assignment>();
  private readonly outbox: ControlPacket[] = [];

  /** (Re)announces proxy IPs for a domain; a known domain goes back to pending and is sent again. */
  assign(gatewayId: string, resourceId: string, domain: string, proxyIps: readonly string[], now: number): boolean {
    const parsed: IpAddr[] = [];
    for (const text of proxyIps) {
      const ip = parseIp(text);
      if (ip === undefined) return false;
      parsed.push(ip);
    }
    const assignment: Assignment = { gatewayId, resourceId, domain, proxyIps, status: 'pending', sends: 0, nextSendAt: now };
    this.assignments.set(key(resourceId, domain), assignment);
    this.send(assignment, now);
    return true;
  }

  handleTimeout(now: number): void {
    for (const assignment of this.assignments.values()) {
      if (assignment.status === 'pending' && now >= assignment.nextSendAt) this.send(assignment, now);
    }
  }

  /** Applies a DomainStatus from `gatewayId`; returns the assignment it settled, if any. */
  handleDomainStatus(gatewayId: string, resourceId: string, domain: string, status: NatStatus): Assignment | undefined {
    const assignment = this.assignments.get(key(resourceId, domain));
    if (assignment === undefined || assignment.gatewayId !== gatewayId) return undefined;
    assignment.status = status;
    return assignment;
  }

  get(resourceId: string, domain: string): Assignment | undefined {
    return this.assignments.get(key(resourceId, domain));
  }

  all(): Assignment[] {
    return [...this.assignments.values()];
  }

  removeResource(resourceId: string): void {
    for (const [k, assignment] of this.assignments) if (assignment.resourceId === resourceId) this.assignments.delete(k);
  }

  pollPacket(): ControlPacket | undefined {
    return this.outbox.shift();
  }

  pollTimeout(): number | undefined {
    let earliest: number | undefined;
    for (const assignment of this.assignments.values()) {
      if (assignment.status !== 'pending') continue;
      if (earliest === undefined || assignment.nextSendAt < earliest) earliest = assignment.nextSendAt;
    }
    return earliest;
  }

  private send(assignment: Assignment, now: number): void {
    const packet = makeAssignedIpsPacket({
      resource: assignment.resourceId,
      domain: assignment.domain,
      proxyIps: assignment.proxyIps.map((text) => parseIp(text)!),
    });
    assignment.sends++;
    assignment.nextSendAt = now + ASSIGNED_IPS_RESEND_MS;
    if (packet !== undefined) this.outbox.push({ gatewayId: assignment.gatewayId, packet });
  }
}

function key(resourceId: string, domain: string): string {
  return `${resourceId}/${domain.replace(/\.$/, '').toLowerCase()}`;
}
