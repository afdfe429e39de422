export * from './allocation.ts';
export * from './candidate.ts';
export * from './constants.ts';
