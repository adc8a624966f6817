// Kubernetes label and annotation syntax (apimachinery validation.IsQualifiedName
// and IsValidLabelValue), returning readable problems instead of booleans.
import { DNS1123_LABEL_PATTERN, DNS1123_SUBDOMAIN_PATTERN } from "./schema/common.js";

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const SUBDOMAIN = new RegExp(DNS1123_SUBDOMAIN_PATTERN);
const LABEL = new RegExp(DNS1123_LABEL_PATTERN);

export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && LABEL.test(value);
}

export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && SUBDOMAIN.test(value);
}

/** Problems with a label or annotation key ("app", "beemesh.io/role"); empty when valid. */
export function qualifiedNameProblems(key: string): string[] {
  const parts = key.split("/");
  let name = key;
  const problems: string[] = [];
  if (parts.length === 2) {
    const prefix = parts[0] ?? "";
    name = parts[1] ?? "";
    if (prefix.length === 0) problems.push("prefix part must be non-empty");
    else if (!isDns1123Subdomain(prefix)) problems.push("prefix part must be a DNS-1123 subdomain");
  } else if (parts.length > 2) {
    return ["a qualified name must consist of an optional DNS subdomain prefix, '/', and a name"];
  }
  if (name.length === 0) problems.push("name part must be non-empty");
  else if (name.length > 63) problems.push("name part must be no more than 63 characters");
  else if (!QUALIFIED_NAME.test(name)) {
    problems.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    );
  }
  return problems;
}

/** Problems with a label value; empty when valid (the empty string is a valid value). */
export function labelValueProblems(value: string): string[] {
  if (value.length === 0) return [];
  if (value.length > 63) return ["must be no more than 63 characters"];
  if (!QUALIFIED_NAME.test(value)) {
    return [
      "a valid label value must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    ];
  }
  return [];
}

/** Total size limit Kubernetes puts on all annotations of one object. */
export const MAX_ANNOTATIONS_BYTES = 256 * 1024;
