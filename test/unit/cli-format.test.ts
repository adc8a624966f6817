// beemeshctl's output, pure: tables, units, event and node rows, rollout
// progress, the API's Table rendering, and manifest checking before apply.
import { type Event } from "../../protocol/index.js";
import { EXAMPLE_TS, exampleEvent, exampleNodeStatus } from "../../protocol/examples.js";
import { columnWidths, eventDetails, eventRow, formatRow, EVENT_HEADERS } from "../../cli/commands/events.js";
import { nodeRow } from "../../cli/commands/nodes.js";
import { parseManifests, renderTable, resolveResource } from "../../cli/commands/resources.js";
import { rolloutStatus } from "../../cli/commands/rollout.js";
import {
  formatBytes,
  formatCpu,
  formatTable,
  formatTime,
  humanAge,
  truncate,
} from "../../cli/commands/table.js";

describe("tables and units", () => {
  test("formatTable pads every column but the last by three spaces", () => {
    expect(
      formatTable(
        ["NAME", "READY", "AGE"],
        [
          ["web", "3/3", "5m"],
          ["a-much-longer-name", "0/1", "10s"],
        ],
      ),
    ).toBe(
      "NAME                 READY   AGE\n" +
        "web                  3/3     5m\n" +
        "a-much-longer-name   0/1     10s\n",
    );
  });

  test("formatTable folds newlines and fills missing cells", () => {
    expect(formatTable(["A", "B"], [["x\ny"]])).toBe("A     B\nx y\n");
  });

  test.each([
    [250, "250m"],
    [1000, "1"],
    [1500, "1500m"],
    [0, "0"],
  ])("formatCpu(%d) = %s", (m, text) => expect(formatCpu(m)).toBe(text));

  test.each([
    [900, "900"],
    [1024, "1Ki"],
    [64 * 1024 ** 2, "64Mi"],
    [1.5 * 1024 ** 3, "1.5Gi"],
    [8 * 1024 ** 3, "8Gi"],
    [300 * 1024 ** 2, "300Mi"],
  ])("formatBytes(%d) = %s", (b, text) => expect(formatBytes(b)).toBe(text));

  test.each([
    [45_000, "45s"],
    [312_000, "5m12s"],
    [3 * 3_600_000, "3h"],
    [52 * 3_600_000, "2d4h"],
  ])("humanAge(%d) = %s", (ms, text) => expect(humanAge(ms)).toBe(text));

  test("truncate and formatTime", () => {
    expect(truncate("abcdef", 10)).toBe("abcdef");
    expect(truncate("abcdefghijkl", 8)).toBe("abcde...");
    expect(formatTime(EXAMPLE_TS)).toBe("2023-11-14T22:13:20Z");
  });
});

describe("events", () => {
  test("a deployed event becomes one row with pod, fence and details", () => {
    expect(eventRow(exampleEvent())).toEqual([
      "2023-11-14T22:13:20Z",
      "Deployment",
      "default/web",
      "deployed",
      "node-1",
      "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
      "pod=web-7c9d2 fence=42 pod running",
    ]);
  });

  test("an unschedulable event without node shows '-' and its reasons; long details are cut unless wide", () => {
    const ev: Event = {
      task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
      status: "unschedulable",
      kind: "StatefulSet",
      ns: "prod",
      parent: "db",
      ordinal: 2,
      attempt: 3,
      reasons: ["node-1: insufficient cpu", "node-2: port 8080 in use", "x".repeat(100)],
      ts: EXAMPLE_TS,
    };
    const row = eventRow(ev);
    expect(row[4]).toBe("-");
    expect(row[6]).toMatch(
      /^ordinal=2 attempt=3 reasons: node-1: insufficient cpu; node-2: port 8080 in use; x+\.\.\.$/,
    );
    expect(row[6]).toHaveLength(100);
    expect(eventRow(ev, { wide: true })[6]).toBe(eventDetails(ev));
    expect(eventRow({ ...ev, reasons: [], ordinal: undefined, attempt: 0 })[6]).toBe("-");
  });

  test("the live table keeps the snapshot's column widths", () => {
    const rows = [eventRow(exampleEvent())];
    const widths = columnWidths(rows);
    const header = formatRow([...EVENT_HEADERS], widths);
    const line = formatRow(rows[0]!, widths);
    // Every column starts at the same offset in the header and in the row.
    for (const col of ["KIND", "STATUS", "TASK", "DETAILS"]) {
      const i = EVENT_HEADERS.indexOf(col as (typeof EVENT_HEADERS)[number]);
      expect(line.indexOf(rows[0]![i]!)).toBe(header.indexOf(col));
    }
  });
});

test("a node row shows used/capacity, labels sorted, and the age of last_seen", () => {
  const n = exampleNodeStatus();
  expect(nodeRow(n, n.last_seen + 75_000)).toEqual([
    "node-1",
    "250m/4",
    "64Mi/8Gi",
    "1/110",
    "kubernetes.io/os=linux,zone=a",
    "75s ago",
  ]);
  expect(nodeRow(n, n.last_seen, true).slice(6)).toEqual([
    "cpu=3800m,memory=7Gi,pods=110",
    "dedicated=web:NoSchedule",
    "3",
  ]);
  expect(nodeRow({ ...n, labels: {} }, n.last_seen)[4]).toBe("<none>");
});

describe("rollout status", () => {
  const bmd = resolveResource("bmd");
  const obj = (generation: number, replicas: number, status?: Record<string, number>) => ({
    metadata: { name: "web", generation },
    spec: { replicas },
    ...(status ? { status } : {}),
  });

  test.each([
    ["no status yet", obj(1, 3), false, "Waiting for rollout spec update to be observed (generation 1)..."],
    [
      "older generation observed",
      obj(2, 3, { observedGeneration: 1, updatedReplicas: 3, readyReplicas: 3, replicas: 3 }),
      false,
      "Waiting for rollout spec update to be observed (generation 2)...",
    ],
    [
      "updating",
      obj(2, 3, { observedGeneration: 2, updatedReplicas: 1, readyReplicas: 3, replicas: 4 }),
      false,
      "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...",
    ],
    [
      "old ones still running",
      obj(2, 3, { observedGeneration: 2, updatedReplicas: 3, readyReplicas: 3, replicas: 4 }),
      false,
      "Waiting for rollout to finish: 1 old replicas are pending termination...",
    ],
    [
      "not all ready",
      obj(2, 3, { observedGeneration: 2, updatedReplicas: 3, readyReplicas: 2, replicas: 3 }),
      false,
      "Waiting for rollout to finish: 2 of 3 updated replicas are available...",
    ],
    [
      "done",
      obj(2, 3, { observedGeneration: 2, updatedReplicas: 3, readyReplicas: 3, replicas: 3 }),
      true,
      'beemeshdeployment.beemesh.io "web" successfully rolled out',
    ],
    [
      "scaled to zero",
      obj(1, 0, { observedGeneration: 1, updatedReplicas: 0, readyReplicas: 0, replicas: 0 }),
      true,
      'beemeshdeployment.beemesh.io "web" successfully rolled out',
    ],
  ] as const)("%s", (_what, o, done, message) => {
    expect(rolloutStatus(o, bmd)).toEqual({ done, message });
  });

  test("replicas defaults to 1 as the API defaults it", () => {
    const o = {
      metadata: { name: "web", generation: 1 },
      spec: {},
      status: { observedGeneration: 1, updatedReplicas: 1, readyReplicas: 1 },
    };
    expect(rolloutStatus(o, bmd).done).toBe(true);
  });
});

test("renderTable shows priority-0 columns, all with wide, and NAMESPACE for -A", () => {
  const table = {
    columnDefinitions: [
      { name: "Name", priority: 0 },
      { name: "Ready", priority: 0 },
      { name: "Images", priority: 1 },
    ],
    rows: [
      { cells: ["web", 3, "busybox"], object: { metadata: { namespace: "prod" } } },
      { cells: ["api", null, ["a", "b"]], object: { metadata: { namespace: "dev" } } },
    ],
  };
  expect(renderTable(table, { wide: false, withNamespace: false })).toBe(
    "NAME   READY\nweb    3\napi    <none>\n",
  );
  expect(renderTable(table, { wide: true, withNamespace: true })).toBe(
    'NAMESPACE   NAME   READY    IMAGES\nprod        web    3        busybox\ndev         api    <none>   ["a","b"]\n',
  );
});

describe("manifests before apply", () => {
  const doc = (name: string, extra = "", ns = "") => `apiVersion: beemesh.io/v1alpha1
kind: BeemeshDeployment
metadata:
  name: ${name}${ns ? `\n  namespace: ${ns}` : ""}
spec:
  replicas: 2
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
      - name: main
        image: localhost/busybox:latest${extra}
`;

  test("several documents, each with the namespace it names or the default one", () => {
    const docs = parseManifests(`${doc("a")}---\n${doc("b", "", "prod")}`, "f.yaml", "default", false);
    expect(docs.map((d) => [d.type.plural, d.namespace, d.name])).toEqual([
      ["beemeshdeployments", "default", "a"],
      ["beemeshdeployments", "prod", "b"],
    ]);
    expect((docs[0]!.body["metadata"] as Record<string, unknown>)["namespace"]).toBe("default");
  });

  test("a List's items are applied one by one", () => {
    const list = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: parseManifests(doc("a"), "f", "default", false).map((d) => d.body),
    });
    expect(parseManifests(list, "f.json", "default", false).map((d) => d.name)).toEqual(["a"]);
  });

  test.each([
    [
      "a typo in a field",
      doc("a", "\n        imagePullPolicyy: Always"),
      /f\.yaml \(document 1\): BeemeshDeployment "a" is invalid: .*imagePullPolicyy/,
    ],
    [
      "another API group",
      doc("a").replace("beemesh.io/v1alpha1", "apps/v1"),
      /apiVersion must be beemesh\.io\/v1alpha1, got "apps\/v1"/,
    ],
    [
      "another kind",
      doc("a").replace("kind: BeemeshDeployment", "kind: Deployment"),
      /kind must be one of BeemeshDeployment, BeemeshStatefulSet/,
    ],
    ["no name", doc("a").replace("  name: a\n", ""), /metadata\.name is required/],
    ["not YAML", "a: [", /f\.yaml is not YAML or JSON/],
    ["nothing", "---\n", /f\.yaml holds no objects/],
  ])("refuses %s", (_what, text, message) => {
    expect(() => parseManifests(text, "f.yaml", "default", false)).toThrow(message);
  });

  test("an object's namespace must match an explicit -n", () => {
    expect(() => parseManifests(doc("a", "", "prod"), "f.yaml", "dev", true)).toThrow(
      /namespace from the object \(prod\) does not match -n dev/,
    );
    expect(parseManifests(doc("a", "", "prod"), "f.yaml", "dev", false)[0]!.namespace).toBe("prod");
  });
});
