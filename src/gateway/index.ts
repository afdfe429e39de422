export { GatewayState, TunAction, TunnelAction } from './state.ts';
export type { AccessResult, ClientPacket, ClientRemovalReason, FlowObserver, GatewayEvent, GatewayStateOptions, PolicyStats, TunVerdict, TunnelVerdict } from './state.ts';
export type { Authorization, ClientInfo, DnsNatRequest, DomainStatus, Filter, ResourceDescription, TunnelInterface } from './types.ts';
export { matchesDomainPattern } from './domain-pattern.ts';
export { expiresAtToMonotonic } from './time.ts';
