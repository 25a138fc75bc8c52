#!/usr/bin/env python3
"""Input generators for bench/run (stdlib only, deterministic per seed).

  gen.py diff OUT --size BYTES --payload BYTES --seed N [--from NAME] [--to NAME]
      an 'rbd diff v1' stream as rbd export-diff writes it: f, t, s, then
      ascending, non-overlapping w/z records (64 KiB..4 MiB, 4 KiB aligned,
      never crossing a 4 MiB object, ~1 in 10 a 'z'), then 'e'; the 'w'
      payloads add up to about --payload bytes of pseudo-random data.
  gen.py image OUT --size BYTES --seed N
      a raw image of pseudo-random data.
  gen.py modify IMG --bytes BYTES --seed N [--extent BYTES]
      overwrite about BYTES of IMG in place with fresh data, in extents of
      --extent bytes (default 1 MiB) at random 4 KiB-aligned places.
"""
import argparse
import os
import random
import struct
import sys

MiB = 1 << 20
OBJ = 4 * MiB
POOL = 64 * MiB


class Pool:
    """A pool of random bytes; slices of it at varying offsets are the data."""

    def __init__(self, rng):
        self.buf = memoryview(rng.randbytes(POOL + OBJ))

    def get(self, rng, n):
        o = rng.randrange(0, POOL) & ~7
        return self.buf[o:o + n]


def gen_diff(a):
    rng = random.Random(a.seed)
    pool = Pool(rng)
    size, payload = a.size, a.payload
    # Records average ~1.4 MiB (uniform 64 KiB..4 MiB, cut at object ends);
    # the gaps are spread so the writes cover `payload` within `size`.
    mean_rec = 1400 * 1024
    with open(a.out, "wb", buffering=4 * MiB) as f:
        f.write(b"rbd diff v1\n")
        for tag, name in ((b"f", a.from_snap), (b"t", a.to_snap)):
            if name:
                n = name.encode()
                f.write(tag + struct.pack("<I", len(n)) + n)
        f.write(b"s" + struct.pack("<Q", size))
        off, written = 0, 0
        while written < payload:
            left = (payload - written) * 10 // 9
            gap = max(0, size - off - left * 5 // 4) // max(1, left // mean_rec)
            off += rng.randrange(0, 2 * gap + 4096) & ~4095
            ln = rng.randrange(16, 1025) * 4096  # 64 KiB .. 4 MiB
            obj_end = (off // OBJ + 1) * OBJ
            ln = min(ln, obj_end - off, payload - written + 4096)
            ln = max(4096, ln - ln % 4096)
            if off + ln > size:
                break
            if rng.random() < 0.1:
                f.write(b"z" + struct.pack("<QQ", off, ln))
            else:
                f.write(b"w" + struct.pack("<QQ", off, ln))
                f.write(pool.get(rng, ln))
                written += ln
            off += ln
        f.write(b"e")


def gen_image(a):
    rng = random.Random(a.seed)
    pool = Pool(rng)
    with open(a.out, "wb", buffering=0) as f:
        left = a.size
        while left > 0:
            n = min(OBJ, left)
            f.write(pool.get(rng, n))
            left -= n


def modify(a):
    rng = random.Random(a.seed)
    pool = Pool(rng)
    size = os.path.getsize(a.out)
    n = max(1, a.bytes // a.extent)
    slots = size // a.extent
    picks = sorted(rng.sample(range(slots), n))
    fd = os.open(a.out, os.O_WRONLY)
    try:
        for s in picks:
            os.pwrite(fd, pool.get(rng, a.extent), s * a.extent)
    finally:
        os.close(fd)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff")
    d.add_argument("out")
    d.add_argument("--size", type=int, required=True)
    d.add_argument("--payload", type=int, required=True)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--from", dest="from_snap")
    d.add_argument("--to", dest="to_snap")
    i = sub.add_parser("image")
    i.add_argument("out")
    i.add_argument("--size", type=int, required=True)
    i.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("modify")
    m.add_argument("out")
    m.add_argument("--bytes", type=int, required=True)
    m.add_argument("--extent", type=int, default=MiB)
    m.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    {"diff": gen_diff, "image": gen_image, "modify": modify}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
