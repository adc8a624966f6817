// Pod manifests fetched from the beemesh-manifests bucket and checked against
// the sha256 the Task names before anything uses them (DESIGN §2): a clone
// Task cannot smuggle another pod in. Content-addressed, so a verified
// manifest is cached by its digest and shared by every task of the template
// (and, in simulations, by every agent of the process).
import { createHash } from "node:crypto";
import { load as loadYaml } from "js-yaml";
import type { KV } from "@nats-io/kv";
import type { ManifestRef } from "../../protocol/index.js";
import { parsePodManifest, type PodManifest } from "./runtime/index.js";

export class ManifestError extends Error {
  override name = "ManifestError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`manifest: ${message}`, options);
  }
}

export class ManifestNotFoundError extends ManifestError {
  override name = "ManifestNotFoundError";
}

export class ManifestDigestError extends ManifestError {
  override name = "ManifestDigestError";
}

export class ManifestInvalidError extends ManifestError {
  override name = "ManifestInvalidError";
}

export interface VerifiedManifest {
  readonly sha256: string;
  readonly manifest: PodManifest;
  /** metadata.labels of the template (placement matches affinity against them). */
  readonly labels: Readonly<Record<string, string>>;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Parses manifest bytes: JSON, or YAML for hand-written templates. */
export function decodeManifest(bytes: Uint8Array): PodManifest {
  const text = new TextDecoder().decode(bytes);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    try {
      raw = loadYaml(text);
    } catch (err) {
      throw new ManifestInvalidError("neither JSON nor YAML", { cause: err });
    }
  }
  try {
    return parsePodManifest(raw);
  } catch (err) {
    throw new ManifestInvalidError(err instanceof Error ? err.message : String(err), { cause: err });
  }
}

export class ManifestCache {
  private readonly verified = new Map<string, VerifiedManifest>();
  private readonly inflight = new Map<string, Promise<VerifiedManifest>>();
  private readonly maxEntries: number;

  constructor(
    private readonly kv: Pick<KV, "get">,
    opts: { maxEntries?: number } = {},
  ) {
    this.maxEntries = opts.maxEntries ?? 256;
  }

  /** The manifest `ref` names, verified against its digest; throws a ManifestError subclass. */
  get(ref: ManifestRef): Promise<VerifiedManifest> {
    const hit = this.verified.get(ref.sha256);
    if (hit !== undefined) {
      // LRU: refresh the entry's place.
      this.verified.delete(ref.sha256);
      this.verified.set(ref.sha256, hit);
      return Promise.resolve(hit);
    }
    const pending = this.inflight.get(ref.sha256);
    if (pending !== undefined) return pending;
    const p = this.fetch(ref).finally(() => this.inflight.delete(ref.sha256));
    this.inflight.set(ref.sha256, p);
    return p;
  }

  private async fetch(ref: ManifestRef): Promise<VerifiedManifest> {
    let entry;
    try {
      entry = await this.kv.get(ref.key);
    } catch (err) {
      throw new ManifestError(`cannot read ${ref.key}`, { cause: err });
    }
    if (entry === null || entry.operation !== "PUT")
      throw new ManifestNotFoundError(`${ref.key} does not exist`);
    const digest = sha256Hex(entry.value);
    if (digest !== ref.sha256) {
      throw new ManifestDigestError(`${ref.key} has sha256 ${digest}, the task names ${ref.sha256}`);
    }
    const manifest = decodeManifest(entry.value);
    const verified: VerifiedManifest = {
      sha256: digest,
      manifest,
      labels: { ...(manifest.metadata.labels ?? {}) },
    };
    this.verified.set(digest, verified);
    if (this.verified.size > this.maxEntries) {
      const oldest = this.verified.keys().next();
      if (oldest.done !== true) this.verified.delete(oldest.value);
    }
    return verified;
  }
}
