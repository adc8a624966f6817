// A Workload API client with @peculiar/x509 certificates, for tools that
// inspect them (the spiffe-helper, tests): der-client.ts does the gRPC and the
// checks, this only turns its DER into x509 objects. The watchdog uses
// der-client.ts directly so it never loads the certificate library.
import { x509 } from "../crypto.js";
import { toArrayBuffer } from "../der.js";
import type { SpiffeId } from "../spiffe-id.js";
import { WorkloadApiDerClient, type WorkloadApiClientOptions, type X509DerContext } from "./der-client.js";

export { WorkloadApiResponseError } from "./der-client.js";
export type { WorkloadApiClientOptions } from "./der-client.js";

export interface X509SvidEntry {
  readonly spiffeId: SpiffeId;
  /** Leaf first, then intermediates. */
  readonly chain: readonly x509.X509Certificate[];
  /** PKCS#8 DER. */
  readonly privateKeyDer: Uint8Array;
  readonly bundle: readonly x509.X509Certificate[];
  readonly hint: string;
  readonly notAfter: Date;
}

export interface X509Context {
  readonly svids: readonly X509SvidEntry[];
  /** Trust domain SPIFFE ID → CA certificates. */
  readonly federatedBundles: ReadonlyMap<string, readonly x509.X509Certificate[]>;
}

function certificates(ders: readonly Uint8Array[]): x509.X509Certificate[] {
  return ders.map((d) => new x509.X509Certificate(toArrayBuffer(d)));
}

function withCertificates(ctx: X509DerContext): X509Context {
  return {
    svids: ctx.svids.map((s) => ({
      spiffeId: s.spiffeId,
      chain: certificates(s.chain),
      privateKeyDer: s.privateKeyDer,
      bundle: certificates(s.bundle),
      hint: s.hint,
      notAfter: s.notAfter,
    })),
    federatedBundles: bundlesWithCertificates(ctx.federatedBundles),
  };
}

function bundlesWithCertificates(
  bundles: ReadonlyMap<string, readonly Uint8Array[]>,
): Map<string, x509.X509Certificate[]> {
  return new Map([...bundles].map(([td, ders]) => [td, certificates(ders)]));
}

export class WorkloadApiClient {
  private readonly der: WorkloadApiDerClient;

  constructor(opts: WorkloadApiClientOptions) {
    this.der = new WorkloadApiDerClient(opts);
  }

  /** The first X509SVIDResponse: the workload's current SVIDs. */
  async fetchX509Context(opts: { timeoutMs?: number } = {}): Promise<X509Context> {
    return withCertificates(await this.der.fetchX509Context(opts));
  }

  /**
   * Every X509SVIDResponse until `signal` aborts (then it just ends) or the stream fails
   * (then it throws the gRPC error, e.g. code PERMISSION_DENIED).
   */
  async *watchX509Context(signal: AbortSignal): AsyncGenerator<X509Context> {
    for await (const ctx of this.der.watchX509Context(signal)) yield withCertificates(ctx);
  }

  async *watchX509Bundles(signal: AbortSignal): AsyncGenerator<Map<string, x509.X509Certificate[]>> {
    for await (const bundles of this.der.watchX509Bundles(signal)) yield bundlesWithCertificates(bundles);
  }

  close(): void {
    this.der.close();
  }
}
