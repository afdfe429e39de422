/** The reference release this implementation matches; the portal reads it from the User-Agent. */
export const GATEWAY_VERSION = '1.4.13';
export const BINARY_NAME = 'firezone-gateway';
