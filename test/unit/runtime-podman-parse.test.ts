// Fixtures trimmed from real podman 4.3.1 output on this machine.
import {
  containerStatusFromPodman,
  listingFromPodman,
  mergeTimestampedLogs,
  parsePodmanContainers,
  parsePodmanPods,
  podStatusFromPodman,
} from "../../controllers/scheduler-bidder/runtime/podman-parse.js";
import { identityLabels } from "../../controllers/scheduler-bidder/runtime/labels.js";
import { RuntimeError } from "../../controllers/scheduler-bidder/runtime/types.js";

const labels = identityLabels(
  { taskId: "01HXYZ", ns: "default", parent: "web", kind: "Deployment", generation: 2, fencingToken: 42 },
  { cpuMillis: 250, memoryBytes: 67108864 },
);

const psJson = JSON.stringify([
  {
    AutoRemove: false,
    Command: null,
    Exited: true,
    ExitedAt: 1795395785,
    ExitCode: 0,
    Id: "044901e69304",
    Image: "localhost/podman-pause:4.3.1-0",
    IsInfra: true,
    Labels: { "io.buildah.version": "1.28.2" },
    Names: ["fb9e0051245e-infra"],
    Pod: "fb9e0051245e",
    PodName: "bmexit",
    StartedAt: 1795395785,
    State: "exited",
  },
  {
    Exited: true,
    ExitedAt: 1795395786,
    ExitCode: 3,
    Id: "6652623dfa91",
    IsInfra: false,
    Labels: labels,
    Names: ["bmexit-app"],
    Pod: "fb9e0051245e",
    PodName: "bmexit",
    StartedAt: 1795395785,
    State: "exited",
  },
  {
    Exited: false,
    ExitedAt: -62135596800,
    ExitCode: 0,
    Id: "92cb1de37153",
    IsInfra: false,
    Labels: labels,
    Names: ["web-1-web"],
    Pod: "b83491948bb8",
    PodName: "web-1",
    StartedAt: 1795395727,
    State: "running",
  },
  {
    Exited: false,
    ExitedAt: -62135596800,
    ExitCode: 0,
    Id: "a1",
    IsInfra: false,
    Labels: labels,
    Names: ["web-1-sidecar"],
    Pod: "b83491948bb8",
    PodName: "web-1",
    StartedAt: -62135596800,
    State: "created",
  },
]);

describe("podman ps parsing", () => {
  const entries = parsePodmanContainers(psJson);

  test("exited app container: exit code, times in ms, name without the pod prefix", () => {
    expect(containerStatusFromPodman(entries[1]!, "bmexit")).toEqual({
      name: "app",
      state: "exited",
      exitCode: 3,
      reason: "Error",
      startedAt: 1795395785000,
      finishedAt: 1795395786000,
    });
  });

  test("Go's zero time is no time", () => {
    expect(containerStatusFromPodman(entries[3]!, "web-1")).toEqual({
      name: "sidecar",
      state: "waiting",
      reason: "ContainerCreating",
    });
  });

  test("pod status ignores the infra container and derives the phase", () => {
    expect(podStatusFromPodman("bmexit", entries)).toMatchObject({
      podName: "bmexit",
      phase: "failed",
      containers: [{ name: "app", exitCode: 3 }],
    });
    expect(podStatusFromPodman("web-1", entries)?.phase).toBe("pending");
    expect(podStatusFromPodman("nope", entries)).toBeUndefined();
  });

  test("bad output is a RuntimeError, empty output an empty list", () => {
    expect(() => parsePodmanContainers("not json")).toThrow(RuntimeError);
    expect(() => parsePodmanContainers('{"Id":"x"}')).toThrow(/expected a JSON array/);
    expect(() => parsePodmanContainers('[{"Id":"x"}]')).toThrow(/entry 0/);
    expect(parsePodmanContainers("")).toEqual([]);
    expect(parsePodmanContainers("null")).toEqual([]);
  });
});

describe("podman listing", () => {
  test("joins pod labels with container states; bad labels are reported, not dropped", () => {
    const pods = parsePodmanPods(
      JSON.stringify([
        { Id: "b83491948bb8", Name: "web-1", Status: "Running", Labels: labels, Containers: [] },
        { Id: "fb9e0051245e", Name: "bmexit", Status: "Exited", Labels: labels },
        { Id: "ffff", Name: "hand-made", Status: "Running", Labels: { "beemesh.io/task-id": "x" } },
      ]),
    );
    const listing = listingFromPodman(pods, parsePodmanContainers(psJson));
    expect(listing.pods.map((p) => [p.podName, p.phase])).toEqual([
      ["bmexit", "failed"],
      ["web-1", "pending"],
    ]);
    expect(listing.pods[0]?.identity).toEqual({
      taskId: "01HXYZ",
      ns: "default",
      parent: "web",
      kind: "Deployment",
      generation: 2,
      fencingToken: 42,
    });
    expect(listing.pods[0]?.limits).toEqual({ cpuMillis: 250, memoryBytes: 67108864 });
    expect(listing.unparsable).toEqual([{ podName: "hand-made", reason: expect.stringMatching(/missing/) }]);
  });
});

describe("log merging", () => {
  test("stdout and stderr interleave by timestamp, nanoseconds included", () => {
    const stdout = "2026-11-23T01:03:05.43056248Z out1\n2026-11-23T01:03:05.430681437Z out2\n";
    const stderr = "2026-11-23T01:03:05.430681436Z err1\n2026-11-23T01:03:06Z err2\n";
    expect(mergeTimestampedLogs(stdout, stderr)).toEqual(["out1", "err1", "out2", "err2"]);
  });

  test("lines keep their spaces; unstamped lines follow their predecessor", () => {
    expect(
      mergeTimestampedLogs("2026-11-23T01:00:00Z a  b \nplain\n", "2026-11-23T01:00:01+00:00 c\n"),
    ).toEqual(["a  b ", "plain", "c"]);
    expect(mergeTimestampedLogs("", "")).toEqual([]);
  });
});
