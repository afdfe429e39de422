export * from './agent.ts';
export * from './candidate.ts';
export * from './constants.ts';
export * from './stun-timing.ts';
export * from './transaction-id.ts';
