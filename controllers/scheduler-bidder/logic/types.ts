// Local input types of the bidder's pure logic. They mirror the wire schema
// (protocol/schema: Task, Taint, Toleration, LabelSelector, Bid victims) field
// for field so the I/O layer can pass parsed messages straight in; the logic
// does not import protocol/ to stay independent of its validation code.

/** Resource amounts; `pods` is a count of pod slots. */
export interface Resources {
  cpu_millis: number;
  memory_bytes: number;
  pods: number;
}

export type PortProtocol = "TCP" | "UDP" | "SCTP";

export interface PortRequest {
  port: number;
  protocol: PortProtocol;
}

export type TaintEffect = "NoSchedule" | "PreferNoSchedule" | "NoExecute";

export interface Taint {
  key: string;
  value?: string;
  effect: TaintEffect;
}

/** Kubernetes semantics: absent operator means Equal; absent effect matches every effect. */
export interface Toleration {
  key?: string;
  operator?: "Exists" | "Equal";
  value?: string;
  effect?: TaintEffect;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

/** metav1.LabelSelector: all terms ANDed; an empty selector matches everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** The parts of a Task that placement looks at. */
export interface PlacementTask {
  task_id: string;
  ns: string;
  parent: string;
  priority: number;
  reqs: { cpu_millis: number; memory_bytes: number; ports: PortRequest[] };
  node_selector?: Record<string, string>;
  tolerations?: Toleration[];
  /** The node must already run a pod (same namespace) whose labels match. */
  affinity?: LabelSelector;
  /** The node must run no pod (same namespace) whose labels match. */
  anti_affinity?: LabelSelector;
  /** Soft preferences, see score.ts (`node-label/<key>` and `node`). */
  hints?: Record<string, string>;
}

/** A pod (running or reserved for a pending bid) as the node's ledger knows it. */
export interface PodOnNode {
  /**
   * The ledger's key for this entry: the task id for a single-replica task's
   * pod or reservation, `<task id>/<replica>` for one pod of a batch share.
   * Absent means the task id.
   */
  key?: string;
  task_id: string;
  ns: string;
  parent: string;
  /** Pod name; victims are named by it on the wire. */
  pod: string;
  priority: number;
  labels: Record<string, string>;
  /** What this entry counts against allocatable (a preempting reservation charges only its excess). */
  charge: Resources;
  ports: PortRequest[];
  /** Local monotonic time the entry was added; the newest are preempted first among equals. */
  started_at_ms: number;
  /** False for pending reservations and for pods already named as victims by another bid. */
  preemptible: boolean;
}

export interface NodeView {
  node_id: string;
  labels: Record<string, string>;
  taints: Taint[];
  allocatable: Resources;
  pods: PodOnNode[];
}

export interface Victim {
  ns: string;
  pod: string;
  task_id: string;
  priority: number;
}
