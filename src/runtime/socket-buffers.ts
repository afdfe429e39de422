/**
 * 1.6.0's UDP socket buffers: 10 ms of 10 Gbit/s received, 1 ms of it (at least one whole GSO send) queued to send,
 * each rounded up to a power of two. The kernel caps requests at `net.core.rmem_max` / `wmem_max`, which the
 * gateway raises to these at start unless `--no-inc-buf`.
 */
export const RECEIVE_BUFFER_SIZE = 16 * 1024 * 1024;
export const SEND_BUFFER_SIZE = 2 * 1024 * 1024;
