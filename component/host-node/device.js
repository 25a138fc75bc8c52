// The `rbdiff:codec/block-device` import for the jco-transpiled component:
// a block device in memory (a Uint8Array that grows and shrinks).
export class Device {
  constructor(bytes = new Uint8Array(0)) {
    this.bytes = Uint8Array.from(bytes);
    this.calls = [];
  }
  size() {
    return BigInt(this.bytes.length);
  }
  read(offset, length) {
    const o = Number(offset);
    this.calls.push(['read', o, length]);
    if (o + length > this.bytes.length) throw `read at ${o}+${length} past the size ${this.bytes.length}`;
    return this.bytes.slice(o, o + length);
  }
  write(offset, data) {
    const o = Number(offset);
    this.calls.push(['write', o, data.length]);
    if (o + data.length > this.bytes.length) throw `write at ${o}+${data.length} past the size`;
    this.bytes.set(data, o);
  }
  writeZeroes(offset, length) {
    const [o, n] = [Number(offset), Number(length)];
    this.calls.push(['write-zeroes', o, n]);
    if (o + n > this.bytes.length) throw `write-zeroes at ${o}+${n} past the size`;
    this.bytes.fill(0, o, o + n);
  }
  resize(size) {
    const n = Number(size);
    this.calls.push(['resize', n, 0]);
    const b = new Uint8Array(n);
    b.set(this.bytes.subarray(0, Math.min(n, this.bytes.length)));
    this.bytes = b;
  }
}
