// Constants of the flow-log feature. The first group are the reference's values
// (rust/libs/connlib/flow-tracker, flow-log-writer, flow-log-upload at gateway-1.6.0); the second are ours.

// ---- Reference values --------------------------------------------------------------------------------------

/** A flow without a packet for this long is closed (flow-tracker `FLOW_TIMEOUT`). */
export const FLOW_IDLE_TIMEOUT_MS = 2 * 60 * 1000;
/** A flow records at most this many outer paths; one more change splits it (`MAX_CONTEXTS_PER_FLOW`). */
export const MAX_OUTERS_PER_FLOW = 16;
/** Reports waiting for the spool writer beyond this are dropped (flow-log-writer `CHANNEL_CAPACITY`). */
export const WRITER_QUEUE_CAPACITY = 10_000;
/** Flows per upload when the portal sends 0 (`DEFAULT_BATCH_SIZE`). */
export const DEFAULT_UPLOAD_BATCH_SIZE = 1_000;
/** The portal's per-request limit (`MAX_BATCH_SIZE`). */
export const MAX_UPLOAD_BATCH_SIZE = 10_000;
/** Pass interval while a backlog remains (`CATCHUP_POLL`), and the `Retry-After` default. */
export const UPLOAD_CATCHUP_MS = 1_000;
/** How often the uploader looks for a configuration while uploads are off (`DISABLED_POLL`). */
export const UPLOAD_DISABLED_POLL_MS = 30_000;
/** Total time one batch is retried on 408/5xx/transport errors before it waits for the next pass. */
export const UPLOAD_MAX_RETRY_MS = 5 * 60 * 1000;
/** Exponential backoff of those retries (the `backoff` crate's defaults, capped at 60 s by the reference). */
export const UPLOAD_BACKOFF_INITIAL_MS = 500;
export const UPLOAD_BACKOFF_MULTIPLIER = 1.5;
export const UPLOAD_BACKOFF_RANDOMIZATION = 0.5;
export const UPLOAD_BACKOFF_MAX_MS = 60_000;
/** Redirects followed for one batch (`MAX_REDIRECTS`). */
export const UPLOAD_MAX_REDIRECTS = 5;
/** A token-less authorization directory younger than this is kept: its token may be on its way. */
export const SPOOL_PRUNE_MIN_AGE_MS = 60_000;
export const INGEST_PATH = '/ingestion/flow_logs';
/** Where the gateway spools (`FLOW_LOGS_DIR` in rust/gateway/src/main.rs). */
export const DEFAULT_SPOOL_DIR = '/var/lib/firezone/flow_logs';
export const UPLOAD_CONFIG_FILE = 'upload.json';
export const TOKEN_FILE = 'token';
export const START_SUFFIX = '.start.json';
export const END_SUFFIX = '.end.json';

// ---- Ours ---------------------------------------------------------------------------------------------------

/**
 * Both FINs seen: the flow closes this long after its last packet (the reference sweeps such flows on its
 * 1 Hz tick, so the closing ACK usually still counts).
 */
export const FIN_LINGER_MS = 1_000;
/** Tracked flows per client; one more closes the client's oldest flow (the reference has no bound). */
export const MAX_FLOWS_PER_CLIENT = 4_096;
/** Tracked flows in total; one more closes the oldest flow of any client. */
export const MAX_FLOWS = 65_536;
/** One upload request gives up after this long without a complete response (a transport failure). */
export const UPLOAD_REQUEST_TIMEOUT_MS = 30_000;
/** The writer waits this long after a failed write (full disk, read-only directory) before retrying. */
export const WRITER_RETRY_INITIAL_MS = 1_000;
export const WRITER_RETRY_MAX_MS = 60_000;
