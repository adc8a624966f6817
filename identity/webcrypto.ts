// Node's WebCrypto for SVID keys, without a certificate library: the watchdog
// sidecar loads this (crypto.ts adds @peculiar/x509 on top for the CA side).
import { webcrypto } from "node:crypto";
import { decodePem, derToPem } from "./der.js";

// The project's lib has no DOM, so WebCrypto's types come from node:crypto.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
export const subtle = webcrypto.subtle;
export const EC_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
export const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(EC_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function exportPkcs8Pem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey("pkcs8", key);
  return derToPem(new Uint8Array(der), "PRIVATE KEY");
}

/** The first PEM block's key (PKCS#8, ECDSA P-256), for signing. */
export async function importPkcs8Pem(pem: string): Promise<CryptoKey> {
  const der = decodePem(pem)[0]?.der;
  if (!der) throw new Error("identity: no PEM block in private key");
  return subtle.importKey("pkcs8", der, EC_ALG, true, ["sign"]);
}
