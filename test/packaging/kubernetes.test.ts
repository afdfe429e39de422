/**
 * The Kubernetes manifests, validated against the Kubernetes API schemas (kubernetes-models),
 * and checked for what a gateway pod needs: NET_ADMIN, /dev/net/tun, the token from a Secret
 * mounted as a file, a FIREZONE_ID stable per pod, liveness on /healthz and readiness on /readyz.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../../packaging/build.ts';

const DIR = join(ROOT, 'packaging', 'kubernetes');

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec?: any };

function documents(): { file: string; doc: Doc }[] {
  return readdirSync(DIR)
    .filter((name) => name.endsWith('.yaml'))
    .flatMap((file) => parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((parsed) => ({ file, doc: parsed.toJS() as Doc })));
}

/** `kubernetes-models/<group>/<version>/<Kind>`, `kubernetes-models/v1/<Kind>` for the core group. */
async function validate(doc: unknown): Promise<void> {
  const { apiVersion, kind } = doc as Doc;
  const module = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = module[kind] ?? module['default'];
  assert.ok(Model !== undefined, `no schema for ${apiVersion} ${kind}`);
  new Model(doc).validate();
}

test('every manifest is valid against the Kubernetes API schemas', async () => {
  const docs = documents();
  assert.deepEqual(docs.map(({ doc }) => doc.kind).sort(), ['PodDisruptionBudget', 'Secret', 'ServiceAccount', 'StatefulSet']);
  for (const { file, doc } of docs) await assert.doesNotReject(validate(doc), `${file}: ${doc.kind}`);
});

test('the validation is real: a wrong field type or a probe port of the wrong type is rejected', async () => {
  const statefulSet = documents().find(({ doc }) => doc.kind === 'StatefulSet')!.doc;
  const wrongType = structuredClone(statefulSet);
  wrongType.spec.replicas = 'three';
  await assert.rejects(validate(wrongType));
  const wrongProbe = structuredClone(statefulSet);
  wrongProbe.spec.template.spec.containers[0].readinessProbe.httpGet.port = { name: 'health' };
  await assert.rejects(validate(wrongProbe));
});

test('the gateway pod: N replicas, NET_ADMIN, /dev/net/tun, token file from a Secret, FIREZONE_ID per pod, /healthz and /readyz', () => {
  const statefulSet = documents().find(({ doc }) => doc.kind === 'StatefulSet')!.doc;
  assert.ok(statefulSet.spec.replicas >= 2);
  const pod = statefulSet.spec.template.spec;
  const gateway = pod.containers.find((c: { name: string }) => c.name === 'gateway');
  assert.deepEqual(gateway.securityContext.capabilities.add, ['NET_ADMIN']);
  assert.equal(gateway.securityContext.allowPrivilegeEscalation, false);

  const env = Object.fromEntries(gateway.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
  assert.equal(env.FIREZONE_ID, '$(POD_NAMESPACE)-$(POD_NAME)', 'stable per pod (StatefulSet names) and unique in the cluster');
  assert.ok(gateway.env.findIndex((e: { name: string }) => e.name === 'POD_NAME') < gateway.env.findIndex((e: { name: string }) => e.name === 'FIREZONE_ID'));

  const mount = (name: string) => gateway.volumeMounts.find((m: { name: string }) => m.name === name);
  const volume = (name: string) => pod.volumes.find((v: { name: string }) => v.name === name);
  assert.equal(env.FIREZONE_TOKEN, `${mount('token').mountPath}/token`, 'FIREZONE_TOKEN is the path of the mounted Secret');
  assert.equal(volume('token').secret.secretName, documents().find(({ doc }) => doc.kind === 'Secret')!.doc.metadata.name);
  assert.equal(mount('tun').mountPath, '/dev/net/tun');
  assert.deepEqual(volume('tun').hostPath, { path: '/dev/net/tun', type: 'CharDevice' });

  assert.equal(gateway.livenessProbe.httpGet.path, '/healthz');
  assert.equal(gateway.readinessProbe.httpGet.path, '/readyz');
  assert.equal(gateway.ports.find((p: { name: string }) => p.name === gateway.readinessProbe.httpGet.port).containerPort, 8080);
  assert.ok(gateway.resources.requests.cpu && gateway.resources.limits.memory);
});
