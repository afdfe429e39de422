export * from './agent.ts';
export * from './candidate.ts';
export * from './constants.ts';
export { PROBE_DST, PROBE_SRC, makeProbeReply, makeProbeRequest, parseProbe, type Probe, type ProbeKind } from './probe.ts';
