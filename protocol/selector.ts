// metav1.LabelSelector semantics: matchLabels and every matchExpression are
// ANDed; an empty selector matches everything (callers that forbid empty
// selectors check isEmptySelector first).
import type { LabelSelector } from "./schema/common.js";

export function isEmptySelector(selector: LabelSelector | undefined): boolean {
  if (!selector) return true;
  return (
    Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0
  );
}

export function matchesSelector(
  labels: Readonly<Record<string, string>> | undefined,
  selector: LabelSelector,
): boolean {
  const have = labels ?? {};
  const has = (key: string) => Object.prototype.hasOwnProperty.call(have, key);
  for (const [key, want] of Object.entries(selector.matchLabels ?? {})) {
    if (!has(key) || have[key] !== want) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const present = has(req.key);
    const value = present ? have[req.key] : undefined;
    const values = req.values ?? [];
    switch (req.operator) {
      case "In":
        if (!present || !values.includes(value as string)) return false;
        break;
      case "NotIn":
        if (present && values.includes(value as string)) return false;
        break;
      case "Exists":
        if (!present) return false;
        break;
      case "DoesNotExist":
        if (present) return false;
        break;
    }
  }
  return true;
}

/**
 * The selector as kubectl's `-l` syntax (metav1.FormatLabelSelector), e.g.
 * `app=web,tier in (a,b),!legacy`; written to status.selector for the scale
 * subresource.
 */
export function selectorToString(selector: LabelSelector): string {
  const parts: string[] = [];
  for (const key of Object.keys(selector.matchLabels ?? {}).sort()) {
    parts.push(`${key}=${selector.matchLabels?.[key] ?? ""}`);
  }
  for (const req of selector.matchExpressions ?? []) {
    const values = [...(req.values ?? [])].sort().join(",");
    switch (req.operator) {
      case "In":
        parts.push(`${req.key} in (${values})`);
        break;
      case "NotIn":
        parts.push(`${req.key} notin (${values})`);
        break;
      case "Exists":
        parts.push(req.key);
        break;
      case "DoesNotExist":
        parts.push(`!${req.key}`);
        break;
    }
  }
  return parts.length === 0 ? "" : parts.join(",");
}
