export * from './client.ts';
export * from './control.ts';
export * from './domain-assignments.ts';
export * from './interface.ts';
export * from './portal-api.ts';
export * from './proxy-ips.ts';
export * from './route-table.ts';
