export * from './constants.ts';
export * from './node.ts';
export * from './relays.ts';
export type { CandidateBatch } from './candidate-signals.ts';
