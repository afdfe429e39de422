// A flow report: the record the tracker emits when a flow starts ("open") and when it ends ("completed"), the
// `flow_logs` log event it becomes, and the payload that is spooled and uploaded.
//
// The payload holds only the network fields (the reference's `RECORD_FIELDS`); attribution rides the ingest
// token, once per authorization. The log event carries the token's attribution claims but never the token.

import { formatIp, parseIp } from '../ip/index.ts';
import { Level } from '../log/index.ts';
import type { Logger } from '../log/index.ts';
import type { SocketAddr } from '../util/socket-addr.ts';
import type { IngestToken } from './ingest-token.ts';
import { formatUtcMicros } from './utc-time.ts';

export type FlowProtocol = 'tcp' | 'udp';

/**
 * One outer (transport) path of a flow as the initiator sees it: `from` is the client's side (absent when
 * unknown), `to` ours. `activatedAt` is the unix time (µs) of the packet that revealed it.
 */
export interface OuterPath {
  readonly from: SocketAddr | undefined;
  readonly to: SocketAddr;
  readonly activatedAt: number;
}

/** The closing half of a report (times in unix µs). "tx" is initiator -> responder. */
export interface FlowClose {
  readonly flowEnd: number;
  readonly lastPacket: number;
  readonly rxPackets: number;
  readonly txPackets: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface FlowRecord {
  readonly token: IngestToken;
  readonly protocol: FlowProtocol;
  readonly innerSrcIp: string;
  readonly innerSrcPort: number;
  readonly innerDstIp: string;
  readonly innerDstPort: number;
  readonly domain: string | undefined;
  readonly outers: readonly OuterPath[];
  /** Unix µs. */
  readonly flowStart: number;
  /** Absent on the open report. */
  readonly close: FlowClose | undefined;
}

/** The JSON object spooled and uploaded for a record (schema: portal `FlowLogIngestRecord`). */
export function recordPayload(record: FlowRecord): Record<string, unknown> {
  return putNetworkFields({ protocol: record.protocol }, record, record.outers.map(outerPayload));
}

/** The inner tuple, domain, outer paths, times and counters, in the reference's order. */
function putNetworkFields(target: Record<string, unknown>, record: FlowRecord, outers: unknown): Record<string, unknown> {
  target['inner_src_ip'] = record.innerSrcIp;
  target['inner_src_port'] = record.innerSrcPort;
  target['inner_dst_ip'] = record.innerDstIp;
  target['inner_dst_port'] = record.innerDstPort;
  if (record.domain !== undefined) target['domain'] = record.domain;
  target['outers'] = outers;
  target['flow_start'] = formatUtcMicros(record.flowStart);
  const close = record.close;
  if (close === undefined) return target;
  target['flow_end'] = formatUtcMicros(close.flowEnd);
  target['last_packet'] = formatUtcMicros(close.lastPacket);
  target['rx_packets'] = close.rxPackets;
  target['tx_packets'] = close.txPackets;
  target['rx_bytes'] = close.rxBytes;
  target['tx_bytes'] = close.txBytes;
  return target;
}

function outerPayload(outer: OuterPath): Record<string, unknown> {
  const path: Record<string, unknown> = {};
  if (outer.from !== undefined) {
    path['src_ip'] = ipText(outer.from.address);
    path['src_port'] = outer.from.port;
  }
  path['dst_ip'] = ipText(outer.to.address);
  path['dst_port'] = outer.to.port;
  path['path_activated_at'] = formatUtcMicros(outer.activatedAt);
  return path;
}

/** Socket addresses come as the OS prints them (`inet_ntop`); reports use the reference's address text. */
function ipText(address: string): string {
  const ip = parseIp(address);
  return ip === undefined ? address : formatIp(ip);
}

/**
 * The `flow_logs` trace event of a record ("TCP flow started", "UDP flow completed", ...), with the
 * attribution claims and the network fields in the reference's order.
 */
export function logFlowRecord(logger: Logger, record: FlowRecord): void {
  if (!logger.enabled(Level.Trace)) return;
  const claims = record.token.claims;
  const fields: Record<string, unknown> = {
    protocol: record.protocol,
    role: claims.role,
    initiator_device_id: claims.initiator_device_id,
    responder_device_id: claims.responder_device_id,
    policy_authorization_id: claims.policy_authorization_id,
    policy_id: claims.policy_id,
    resource_id: claims.resource_id,
    resource_name: claims.resource_name,
  };
  optional(fields, 'resource_address', claims.resource_address);
  fields['initiator_actor_id'] = claims.initiator_actor_id;
  optional(fields, 'initiator_actor_email', claims.initiator_actor_email);
  fields['initiator_actor_name'] = claims.initiator_actor_name;
  optional(fields, 'initiator_auth_provider_id', claims.initiator_auth_provider_id);
  fields['authorized_at'] = claims.authorized_at;
  fields['authorization_expires_at'] = claims.authorization_expires_at;
  optional(fields, 'initiator_client_version', claims.initiator_client_version);
  optional(fields, 'initiator_device_os_name', claims.initiator_device_os_name);
  optional(fields, 'initiator_device_os_version', claims.initiator_device_os_version);
  optional(fields, 'initiator_device_serial', claims.initiator_device_serial);
  optional(fields, 'initiator_device_uuid', claims.initiator_device_uuid);
  optional(fields, 'initiator_device_identifier_for_vendor', claims.initiator_device_identifier_for_vendor);
  optional(fields, 'initiator_device_firebase_installation_id', claims.initiator_device_firebase_installation_id);
  // A log field holds one value, so the paths ride as one JSON text (as in the reference).
  putNetworkFields(fields, record, JSON.stringify(record.outers.map(outerPayload)));
  const protocol = record.protocol === 'tcp' ? 'TCP' : 'UDP';
  logger.trace(`${protocol} flow ${record.close === undefined ? 'started' : 'completed'}`, fields);
}

function optional(fields: Record<string, unknown>, name: string, value: string | null | undefined): void {
  if (value !== undefined && value !== null) fields[name] = value;
}
