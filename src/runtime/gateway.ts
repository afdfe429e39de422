/**
 * Starts the gateway on a Linux host: the IO shell around the sans-IO core, in the reference's
 * start-up order (login URL, resolv.conf, tunnel and UDP sockets, portal address, TUN device,
 * portal connection, health check).
 */
import { isIPv6 } from 'node:net';
import { hostname } from 'node:os';
import { randomBytes as cryptoRandomBytes, randomUUID } from 'node:crypto';
import type { StartedGateway } from '../cli/main.ts';
import type { GatewayOptions } from '../cli/options.ts';
import { GatewayState } from '../gateway/index.ts';
import { createLogger, errorChain } from '../log/index.ts';
import { OperatorHints } from '../portal/operator-hints.ts';
import {
  createLoginUrl,
  currentOsFacts,
  decodeIngress,
  fatalExitMessage,
  logChannelEvent,
  loginUrlWithPublicKey,
  PhoenixChannel,
  PortalConnection,
  userAgent,
  type IngressMessage,
} from '../portal/index.ts';
import { MAX_PORTAL_FRAME_BYTES, PortalInputLimits } from '../portal/input-limits.ts';
import { Node } from '../snownet/index.ts';
import { systemRandom } from '../util/random.ts';
import { dataPathMode, logDataPath, offloadsFor, transportCipherFor } from './data-path.ts';
import { DnsForwarder } from './dns-forwarder.ts';
import { startFlowLogs } from './flow-logs.ts';
import { GatewayEventLoop } from './event-loop.ts';
import { HealthServer } from './health-server.ts';
import { GatewayStatus } from './gateway-status.ts';
import { DNS_LOOKUP_BOUNDARIES, MetricName, MetricsRegistry, prometheusEnabled, startMetrics } from './metrics.ts';
import { markedTcpSocket } from './native.ts';
import { applyInterfaceConfig, checkIproute2 } from './interface-config.ts';
import { readResolvConf } from './resolv-conf.ts';
import { Resolver } from './resolver.ts';
import { TUN_DEVICE_NAME, TunDevice } from './tun-device.ts';
import { bindDataPlaneSockets, FIREZONE_MARK } from './udp-socket.ts';

const log = createLogger('firezone_gateway');

export async function startGateway(options: GatewayOptions, firezoneId: string): Promise<StartedGateway> {
  await checkIproute2();
  const rng = systemRandom();
  const name = options.firezoneName ?? (safeHostname() || randomUUID());

  const login = createLoginUrl(options.apiUrl, { token: options.token, firezoneId, name }, 'v2');
  if (!login.ok) throw new Error(`Failed to construct URL for logging into portal: ${login.error.message}`);
  // Portals older than the v2 socket (2026-07-15) answer 404 there: the connection falls back to this one.
  const loginV1 = createLoginUrl(options.apiUrl, { token: options.token, firezoneId, name }, 'v1');
  if (!loginV1.ok) throw new Error(`Failed to construct URL for logging into portal: ${loginV1.error.message}`);

  const resolvConf = await readResolvConf();
  if (!resolvConf.ok) throw new Error(resolvConf.error);

  const privateKey = cryptoRandomBytes(32);
  const clock = (): number => performance.now();
  const dataPath = dataPathMode();
  const transportCipher = transportCipherFor(dataPath);
  logDataPath(dataPath, transportCipher);
  const node = new Node({ role: 'server', privateKey, rng, now: clock(), unixOffsetMs: Date.now() - clock(), transportCipher });
  const state = new GatewayState();

  let loop: GatewayEventLoop | undefined;
  const status = new GatewayStatus();
  const metricsRegistry = new MetricsRegistry();
  const dnsLookups = metricsRegistry.histogram(MetricName.dnsLookupDuration, {}, DNS_LOOKUP_BOUNDARIES);
  const udpBatches = metricsRegistry.histogram(MetricName.batchCount, { 'network.transport': 'udp', 'network.io.direction': 'receive' });
  const sockets = bindDataPlaneSockets({
    mark: FIREZONE_MARK,
    offloads: offloadsFor(dataPath),
    onDatagrams: (batch) => {
      udpBatches.record(batch.count);
      loop?.handleDatagrams(batch);
    },
  });

  let tun: TunDevice;
  try {
    tun = TunDevice.open(TUN_DEVICE_NAME, {
      queues: Math.max(1, options.tunThreads),
      offloads: offloadsFor(dataPath),
      onPackets: (batch) => loop?.handleTunPackets(batch),
      onQueueFailed: (queue, errno) => log.warn('Failed to read from TUN FD', { queue, errno }),
    });
  } catch (error) {
    closeSockets();
    throw new Error('Failed to create TUN device', { cause: error });
  }

  const dnsForwarder = new DnsForwarder({ upstreams: resolvConf.nameservers });
  void dnsForwarder.startProbing().catch((error: unknown) => log.debug('DNS upstream probing failed', { error: errorChain(error) }));

  let fail: (error: Error) => void = () => undefined;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });

  // The dialect follows the socket path: v2 unless the portal has no v2 path (then v1 from then on).
  const dialect = (): 'v1' | 'v2' => portal.dialect;
  const inputLimits = new PortalInputLimits();
  const channel = new PhoenixChannel<IngressMessage>({
    topic: 'gateway',
    rng,
    decode: inputLimits.decoder((event, payload) => decodeIngress(event, payload, dialect())),
    maxPartitionMs: options.maxPartitionTimeMs,
  });
  const host = new URL(login.value.href).host;
  const operatorHints = new OperatorHints();
  const portal: PortalConnection<IngressMessage> = new PortalConnection<IngressMessage>({
    url: loginUrlWithPublicKey(login.value, node.publicKey),
    v1Url: loginUrlWithPublicKey(loginV1.value, node.publicKey),
    token: options.token,
    userAgent: userAgent(currentOsFacts()),
    channel,
    // Our own sockets bypass the tunnel routes (the reference marks the portal connection too).
    createSocket: (address) => markedTcpSocket(isIPv6(address) ? 6 : 4, FIREZONE_MARK),
    acceptsFrame: (text) => inputLimits.acceptsFrame(text),
    maxFrameBytes: MAX_PORTAL_FRAME_BYTES,
    onEvent: (event) => {
      logChannelEvent(event, host);
      const hint = operatorHints.forEvent(event);
      if (hint !== undefined) log.warn(hint);
      if (event.kind === 'stateChanged') status.portalStateChanged(event.state);
      else if (event.kind === 'hiccup') status.portalHiccup();
      if (event.kind === 'message') loop?.handlePortalMessage(event.message);
      else if (event.kind === 'joined') loop?.portalJoined(dialect());
      else if (event.kind === 'hiccup') loop?.portalDisconnected();
      else if (event.kind === 'fatal') fail(new Error(fatalExitMessage(event.error).replace(/^Failed to start Gateway: /, '')));
    },
  });

  const flowLogs = startFlowLogs({ forced: options.flowLogs, now: clock(), mark: FIREZONE_MARK });
  loop = new GatewayEventLoop({
    node,
    state,
    flowLogs: flowLogs.flowLogs,
    sockets,
    tun,
    portal: { send: (event, payload) => portal.send(event, payload), reconnect: () => portal.reconnect() },
    resolver: new Resolver({ observeLookup: (seconds) => dnsLookups.record(seconds) }),
    configureInterface: async (tunAddresses, superseded) => {
      try {
        await applyInterfaceConfig(TUN_DEVICE_NAME, tunAddresses, { signal: superseded });
      } catch (error) {
        throw new Error('Failed to update TUN interface', { cause: error });
      }
      if (superseded.aborted) return;
      await dnsForwarder.rebind(tunAddresses);
      status.tunConfigured = true;
    },
    clock,
    wallClock: () => Date.now(),
    rng,
    validateChecksums: options.validateChecksums,
    // set_snownet_capabilities after every join (the ICE-less engineer's option; 1.6.0 says true).
    iceless: options.iceless,
    onFatal: (error) => fail(error),
  });

  const metrics = startMetrics({
    exporter: options.metrics,
    otlpGrpcEndpoint: options.otlpGrpcEndpoint,
    prometheus: prometheusEnabled(process.env),
    firezoneId,
    registry: metricsRegistry,
    sources: { loop: () => loop?.stats, node: () => node.stats, connections: () => node.connectionCounts(), status: () => status, udpV4: () => sockets.v4, udpV6: () => sockets.v6, tun: () => tun },
  });

  portal.start();
  const health = await HealthServer.start(options.healthCheckAddr, { isReady: () => status.ready, metrics: metrics.prometheusHandler });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      loop?.shutdown();
      // Let the allocation deletions leave before the sockets close, and the last flow reports reach the spool;
      // meanwhile the portal's WebSocket is closed with a Close frame (1000), as 1.6.0 does on SIGINT/SIGTERM.
      await Promise.all([new Promise((resolve) => setTimeout(resolve, 50)), flowLogs.close(), portal.close()]);
      await metrics.stop();
      portal.stop();
      closeSockets();
      tun.close();
      await Promise.allSettled([health.close(), dnsForwarder.close()]);
      finish();
    })());

  return { done, stop };

  function closeSockets(): void {
    sockets.v4?.close();
    sockets.v6?.close();
  }
}

function safeHostname(): string {
  try {
    return hostname();
  } catch {
    return '';
  }
}
