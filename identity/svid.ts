// An SVID as its holder uses it: the PEM/DER to present and the key to sign
// with, without a parsed certificate object (ca.ts's Svid adds one). The bus
// takes this, so a sidecar can build it without a certificate library.
import type { CryptoKey } from "./webcrypto.js";

export interface SvidCredentials {
  readonly spiffeId: string;
  readonly role: string;
  readonly certPem: string;
  readonly certDer: Uint8Array;
  readonly keyPem: string;
  readonly privateKey: CryptoKey;
  /** Leaf then CA: what a TLS peer presents. */
  readonly chainPem: string;
  readonly bundlePem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}
