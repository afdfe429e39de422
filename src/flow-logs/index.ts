export * from './constants.ts';
export { decodeJwtPayload, isValidAuthorizationId, isValidRole, spoolRouteOf, tokenExpiry } from './ingest-token.ts';
export type { IngestToken, IngestTokenClaims, SpoolRoute } from './ingest-token.ts';
export { PacketTuple } from './packet-tuple.ts';
export { logFlowRecord, recordPayload } from './record.ts';
export type { FlowClose, FlowProtocol, FlowRecord, OuterPath } from './record.ts';
export { FlowTracker } from './tracker.ts';
export type { FlowTrackerOptions, FlowTrackerStats } from './tracker.ts';
export { UtcClock, formatUtcMicros, unixSecondsOf } from './utc-time.ts';
