/**
 * Writes an OCI image layout and packs it as a tarball (an "oci-archive" that `podman load`,
 * `skopeo` and Docker 25+ read): a base layer from a rootfs tarball and a layer with our files.
 * The image config carries Docker's `Healthcheck` extension, which podman and docker honour.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface ImageFile {
  readonly source: string;
  readonly path: string;
  readonly mode: number;
}

export interface OciImageOptions {
  readonly rootfsTar: string;
  readonly output: string;
  readonly arch: string;
  readonly files: readonly ImageFile[];
  readonly extraFiles?: readonly { readonly path: string; readonly content: string; readonly mode: number }[];
  /** The image config's `config` object (Env, Entrypoint, Cmd, Healthcheck, ...). */
  readonly config: Record<string, unknown>;
  /** Reference the image is loaded as. */
  readonly name?: string;
}

/**
 * Docker's image manifest and config types inside the OCI layout: podman reads `Healthcheck`
 * only from a Docker-typed config (it drops it from an OCI-typed one), and Docker reads both.
 */
const MEDIA = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
};

interface Blob {
  readonly digest: string;
  readonly size: number;
}

export async function buildOciImage(options: OciImageOptions): Promise<void> {
  const work = `${options.output}.work`;
  rmSync(work, { recursive: true, force: true });
  const blobs = join(work, 'layout', 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });

  const base = await compressedLayer(options.rootfsTar);
  const stage = join(work, 'stage');
  for (const file of options.files) {
    const path = join(stage, file.path);
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(file.source, path);
    chmodSync(path, file.mode);
  }
  for (const file of options.extraFiles ?? []) {
    const path = join(stage, file.path);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, file.content);
    chmodSync(path, file.mode);
  }
  const appTar = join(work, 'app.tar');
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', stage, '-cf', appTar, '.']);
  const app = await compressedLayer(appTar);

  const layers = [base, app];
  for (const layer of layers) copyFileSync(layer.gzPath, join(blobs, layer.gz.digest.slice('sha256:'.length)));

  const created = new Date(Number(execFileSync('git', ['log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim() || '0') * 1000).toISOString();
  const config = writeJsonBlob(blobs, {
    created,
    architecture: options.arch,
    os: 'linux',
    config: options.config,
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: [
      { created, created_by: 'mmdebstrap --variant=minbase (Debian 12)' },
      { created, created_by: 'firezone-gateway executable and entrypoint' },
    ],
  });
  const manifest = writeJsonBlob(blobs, {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, ...config },
    layers: layers.map((layer) => ({ mediaType: MEDIA.layer, ...layer.gz })),
  });
  const name = options.name ?? 'localhost/firezone-gateway:latest';
  writeFileSync(join(work, 'layout', 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(work, 'layout', 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: MEDIA.manifest,
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': name, 'io.containerd.image.name': name },
        },
      ],
    }),
  );
  const partial = `${options.output}.partial`;
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', join(work, 'layout'), '-cf', partial, '.']);
  renameSync(partial, options.output);
  rmSync(work, { recursive: true, force: true });
}

/** gzip -n of a tarball, cached beside it (the base layer is the same for every build of a run). */
async function compressedLayer(tar: string): Promise<{ gzPath: string; gz: Blob; diffId: string }> {
  const gzPath = `${tar}.gz`;
  if (!existsSync(gzPath) || statSync(gzPath).mtimeMs < statSync(tar).mtimeMs) {
    execFileSync('sh', ['-c', 'gzip -n -6 -c "$1" > "$2.partial" && mv "$2.partial" "$2"', 'gzip', tar, gzPath]);
  }
  const [diffId, digest] = await Promise.all([sha256File(tar), sha256File(gzPath)]);
  return { gzPath, gz: { digest: `sha256:${digest}`, size: statSync(gzPath).size }, diffId: `sha256:${diffId}` };
}

function writeJsonBlob(blobs: string, value: unknown): Blob {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(blobs, digest), bytes);
  return { digest: `sha256:${digest}`, size: bytes.length };
}

/** SHA-256 of a file, hex, read as a stream. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

