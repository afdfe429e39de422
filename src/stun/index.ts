export * from './constants.ts';
export * from './attributes.ts';
export * from './message.ts';
export * from './integrity.ts';
export * from './fingerprint.ts';
export * from './channel-data.ts';
export { formatIpv4, formatIpv6, writeIpAddress } from './address.ts';
