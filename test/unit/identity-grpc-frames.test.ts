// gRPC's length-prefixed messages (PROTOCOL-HTTP2.md "Length-Prefixed-Message")
// as HTTP/2 DATA chunks deliver them: split anywhere, several per chunk.
import {
  GrpcFrameReader,
  GrpcStatus,
  GrpcStatusError,
  grpcFrame,
} from "../../identity/workload-api/grpc-stream.js";

const msg = (n: number, fill: number) => new Uint8Array(n).fill(fill);
const hex = (bs: Buffer[]) => bs.map((b) => b.toString("hex"));

describe("GrpcFrameReader", () => {
  const a = msg(3, 0xaa);
  const b = msg(0, 0);
  const c = msg(300, 0xcc);
  const stream = Buffer.concat([grpcFrame(a), grpcFrame(b), grpcFrame(c)]);
  const expected = hex([Buffer.from(a), Buffer.from(b), Buffer.from(c)]);

  test("several messages in one chunk", () => {
    const r = new GrpcFrameReader();
    expect(hex(r.push(stream))).toEqual(expected);
    expect(r.pending).toBe(0);
  });

  test("one byte per chunk", () => {
    const r = new GrpcFrameReader();
    const out: Buffer[] = [];
    for (const byte of stream) out.push(...r.push(Buffer.from([byte])));
    expect(hex(out)).toEqual(expected);
    expect(r.pending).toBe(0);
  });

  test.each([1, 4, 5, 7, 200])("chunks of %i bytes", (size) => {
    const r = new GrpcFrameReader();
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) out.push(...r.push(stream.subarray(i, i + size)));
    expect(hex(out)).toEqual(expected);
  });

  test("an unfinished message stays pending", () => {
    const r = new GrpcFrameReader();
    expect(r.push(grpcFrame(c).subarray(0, 100))).toEqual([]);
    expect(r.pending).toBe(100);
  });

  test("a compressed message is refused", () => {
    const frame = grpcFrame(a);
    frame[0] = 1;
    expect(() => new GrpcFrameReader().push(frame)).toThrow(GrpcStatusError);
    expect(() => new GrpcFrameReader().push(frame)).toThrow(/compressed message/);
  });

  test("a message over the limit is refused from its header alone", () => {
    const header = Buffer.from([0, 0, 0, 0x10, 0x01]); // 4097 bytes announced
    let err: unknown;
    try {
      new GrpcFrameReader(4096).push(header);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GrpcStatusError);
    expect((err as GrpcStatusError).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
  });
});

test("grpcFrame writes flag 0 and a big-endian length", () => {
  expect([...grpcFrame(new Uint8Array([7, 8]))]).toEqual([0, 0, 0, 0, 2, 7, 8]);
});
