export * from './candidate.ts';
