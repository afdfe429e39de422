import { readFileSync } from 'node:fs';
import { IpPacket, makeTcpPacket, makeUdpPacket, parseIp } from '../../src/ip/index.ts';
import type { IpAddr } from '../../src/ip/index.ts';
import type { FlowRecord, FlowTracker, IngestToken, IngestTokenClaims } from '../../src/flow-logs/index.ts';
import { socketAddr } from '../../src/util/socket-addr.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';
import { fixturePath } from '../support/env.ts';

interface CreateAuthorizationFixture {
  readonly frame: { readonly payload: { readonly flow_logs_ingest_token: string } };
  readonly decoded_flow_logs_ingest_token_claims: IngestTokenClaims;
}

export const CREATE_AUTHORIZATION = JSON.parse(
  readFileSync(fixturePath('portal-1.6', 'create_authorization.json'), 'utf8'),
) as CreateAuthorizationFixture;

/** The fixture's token (role initiator, uploads enabled). */
export const FIXTURE_TOKEN: IngestToken = {
  raw: CREATE_AUTHORIZATION.frame.payload.flow_logs_ingest_token,
  claims: CREATE_AUTHORIZATION.decoded_flow_logs_ingest_token_claims,
};

/** A token shaped like the portal's responder token, with the fixture's claims and `overrides`. */
export function responderToken(overrides: Partial<Record<keyof IngestTokenClaims, unknown>> = {}): IngestToken {
  const claims = { ...CREATE_AUTHORIZATION.decoded_flow_logs_ingest_token_claims, role: 'responder', ...overrides } as IngestTokenClaims;
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return { raw: `${header}.${payload}.c2lnbmF0dXJl`, claims };
}

export const CLIENT = 'aaaaaaaa-0000-4000-8000-000000000001';
export const OTHER_CLIENT = 'bbbbbbbb-0000-4000-8000-000000000002';
export const RESOURCE = '11111111-0000-4000-8000-000000000001';
export const CLIENT_IP = '100.64.0.10';
export const RESOURCE_IP = '10.1.0.5';
export const CLIENT_OUTER = socketAddr('192.0.2.10', 40000);
export const GATEWAY_OUTER = socketAddr('198.51.100.1', 52625);

export function ip(text: string): IpAddr {
  const addr = parseIp(text);
  if (addr === undefined) throw new Error(`bad ip ${text}`);
  return addr;
}

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export function tcp(src: string, sport: number, dst: string, dport: number, flags: number, payloadLength = 0): Uint8Array {
  return makeTcpPacket(ip(src), ip(dst), sport, dport, { flags }, new Uint8Array(payloadLength));
}

export function udp(src: string, sport: number, dst: string, dport: number, payloadLength = 4): Uint8Array {
  return makeUdpPacket(ip(src), ip(dst), sport, dport, new Uint8Array(payloadLength));
}

const view = new IpPacket();

/** A client -> resource packet as the policy core forwards it. */
export function sendTx(
  tracker: FlowTracker,
  packet: Uint8Array,
  now: number,
  options: { client?: string; resource?: string; domain?: string; from?: SocketAddr; to?: SocketAddr } = {},
): void {
  if (view.parse(packet) !== undefined) throw new Error('bad test packet');
  tracker.packet.load(view);
  tracker.clientToResource(options.client ?? CLIENT, options.resource ?? RESOURCE, options.domain, options.from ?? CLIENT_OUTER, options.to ?? GATEWAY_OUTER, now);
}

/** A resource -> client packet as read from the TUN device and handed to the tunnel. */
export function sendRx(tracker: FlowTracker, packet: Uint8Array, now: number, options: { client?: string; resource?: string } = {}): void {
  if (view.parse(packet) !== undefined) throw new Error('bad test packet');
  tracker.packet.load(view);
  tracker.resourceToClient(options.client ?? CLIENT, options.resource ?? RESOURCE, now);
}

export function drainRecords(tracker: FlowTracker): FlowRecord[] {
  const out: FlowRecord[] = [];
  for (let r = tracker.pollRecord(); r !== undefined; r = tracker.pollRecord()) out.push(r);
  return out;
}


/** A logger that keeps warnings and errors for assertions and prints nothing. */
export { recordingLogger as silentLogger } from '../gateway/support.ts';
